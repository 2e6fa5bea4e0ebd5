"""The report site: pages of the params, navigation, provenance from dvc.lock, offline pages."""

from __future__ import annotations

import hashlib
import re

import pytest
from conftest import REPO

from lesionlab.config import load_params
from lesionlab.reporting import site


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def test_every_stage_of_the_params_has_one_page(params):
    pages = site.site_pages(params)
    htmls = [p.html for p in pages]
    assert len(htmls) == len(set(htmls))
    expected = (
        3
        + len(params.variants)
        + len(params.probes)
        + len(params.finetunes)
        + len(params.tabulars)
        + len(params.ensembles)
        + 1  # one Grad-CAM page, a section per explained variant
    )
    assert len(pages) == expected
    stages = {p.stage for p in pages}
    assert {
        "eda",
        "split",
        "compare",
        "train@cnn_baseline",
        "probe@lite0_probe",
        "finetune@lite0_full",
        "tabular@meta_gbm",
        "ensemble@image_stack",
        "explain",
    } <= stages
    assert [p.html for p in pages if p.stage.startswith("explain")] == ["explanations.html"]


def test_explanation_sections_have_safe_distinct_anchors():
    from lesionlab.reporting.report import anchor, explanation_link

    assert anchor("cnn_baseline") == "cnn_baseline"
    hostile = ['a"><script>x</script>', "a b", "a-b", "a/b", ""]
    ids = [anchor(v) for v in hostile]
    assert len(set(ids)) == len(ids)  # "a b" and "a-b" differ although both map spaces to "-"
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in ids)
    assert explanation_link("lite0_full") == "explanations.html#lite0_full"


def test_navigation_links_are_relative_to_the_page():
    top = site.nav_html("index.html", "synthetic")
    assert "href='eda.html'" in top and "href='compare.html'" in top and "ll-here'>Index" in top
    deep = site.nav_html("variants/cnn_aug.html", "synthetic")
    assert "href='../index.html'" in deep and "href='../compare.html'" in deep


def test_inject_adds_the_header_and_sorting_and_drops_cdn_scripts():
    page = (
        '<html><head><script src="https://cdnjs.cloudflare.com/x/require.min.js"></script></head>'
        '<body class="jp-Notebook"><p>cells</p><script type="module">const m = await import('
        '"https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs");</script>'
        "<script>init_local();</script></body></html>"
    )
    out = site.inject(page, "<div id='top'>TOP</div>")
    assert "cdnjs" not in out and "init_local();" in out
    assert out.index("<div id='top'>") == out.index('<body class="jp-Notebook">') + len('<body class="jp-Notebook">')
    assert out.index("click to sort") < out.index("</body>") and out.index("<p>cells</p>") < out.index("<script>")
    with pytest.raises(ValueError, match="no <body>"):
        site.inject("<p>fragment</p>", "x")


def test_code_check_compares_the_lock_with_the_checkout(tmp_path):
    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "a.py"
    f.write_text("x = 1\n")
    entry = {
        "deps": [
            {"path": "src/a.py", "md5": hashlib.md5(b"x = 1\n").hexdigest()},
            {"path": "results/ds/prepared", "md5": "abc.dir"},
        ]
    }
    assert site.code_check(tmp_path, entry) == (["src/a.py"], [])
    f.write_text("x = 2\n")
    assert site.code_check(tmp_path, entry) == ([], ["src/a.py"])
    # a stage's code fingerprint: its modules match while the fingerprint it ran with is this checkout's
    (tmp_path / "results/code").mkdir(parents=True)
    fingerprint = tmp_path / "results/code/train.txt"
    fingerprint.write_text(
        "# the package modules `python -m lesionlab train` can import\nab12  src/a.py\ncd34  src/b.py\n"
    )
    entry = {"deps": [{"path": "results/code/train.txt", "md5": hashlib.md5(fingerprint.read_bytes()).hexdigest()}]}
    assert site.code_check(tmp_path, entry) == (["src/a.py", "src/b.py"], [])
    fingerprint.write_text(fingerprint.read_text().replace("cd34", "ef56"))  # src/b.py changed since the run
    assert site.code_check(tmp_path, entry) == ([], ["results/code/train.txt"])


def test_provenance_names_stage_data_hash_seed_wall_time_and_params(tmp_path):
    lock = {
        "prepare": {
            "deps": [
                {"path": "data/ham10000", "md5": "0123456789abcdef.dir"},
                {"path": "src/lesionlab/data/prepare.py", "md5": "x"},
            ],
            "outs": [{"path": "results/ham10000/prepared", "md5": "fedcba9876543210.dir"}],
        },
        "train@cnn_aug": {
            "deps": [],
            "params": {"params.yaml": {"base.seed": 42, "variants.cnn_aug": {"augment": True}}},
        },
    }
    page = site.Page("train@cnn_aug", "train@cnn_aug.ipynb", "variants/cnn_aug.html", "cnn_aug", "CNN ladder")
    text = site.provenance_html(
        tmp_path,
        "ham10000",
        page,
        lock["train@cnn_aug"],
        {"seconds": 12.34, "started": "2026-11-23T10:00:00.1", "commit": "abc1234"},
        lock,
        "numpy 2",
        commit="def5678",
        source_path="data/ham10000",
    )
    for expected in (
        "train@cnn_aug",
        "ham10000",
        "data/ham10000",
        "0123456789ab",
        "fedcba987654",
        "seed 42",
        "12.3 s",
        "2026-11-23 10:00:00",
        "abc1234",
        "def5678",
        "variants.cnn_aug",
        "augment",
        "numpy 2",
    ):
        assert expected in text, expected
    missing = site.provenance_html(
        tmp_path, "ham10000", page, None, {}, {}, "", commit="x", source_path="data/ham10000"
    )
    assert "not in dvc.lock" in missing and "not recorded" in missing


@pytest.mark.parametrize(
    "dataset", sorted(p.name for p in (REPO / "reports").iterdir() if (p / "index.html").is_file())
)
def test_committed_report_opens_in_a_browser(dataset):
    """The reports in git (what reviewers open) render in headless Chromium from disk: every leaderboard row,
    every figure decoded, nothing fetched off disk; each page the index links to exists."""
    import pandas as pd

    from tools.browser import Browser, check_page

    reports = REPO / "reports" / dataset
    with Browser() as b:
        found = check_page(b, reports / "index.html")
        assert found["leaderboard_rows"] == len(pd.read_csv(reports / "leaderboard.csv")), found
        assert found["images"] and all(w > 0 for w in found["images"]) and not found["remote"], found
        assert found["disclaimer"]
        b.screenshot(REPO / "test-artifacts" / f"{dataset}-index.png")
        links = b.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    missing = [link for link in links if link.endswith((".html", ".csv")) and not (reports / link).is_file()]
    assert not missing, missing


def test_template_css_is_one_shared_file_linked_relative_to_each_page(tmp_path):
    page = (
        "<html><head><title>t</title><style>a{b:c}</style><style>d{e:f}</style></head><body>"
        "<style scoped>.x{}</style></body></html>"
    )
    top = site.share_styles(page, "index.html", tmp_path)
    nested = site.share_styles(page, "variants/cnn_aug.html", tmp_path)
    assert (tmp_path / site.STYLESHEET).read_text() == "a{b:c}\nd{e:f}\n"
    assert '<link rel="stylesheet" href="assets/notebook.css">' in top and "a{b:c}" not in top
    assert 'href="../assets/notebook.css"' in nested
    assert "<style scoped>.x{}</style>" in top  # a table's own style stays in the body
    with pytest.raises(ValueError, match="differs"):
        site.share_styles(page.replace("a{b:c}", "a{b:z}"), "eda.html", tmp_path)


def test_pages_keep_printed_lines_and_drop_progress_bars():
    text = "start\nembed:  10%|█         | 1/10 [00:01<00:09]\rembed: 100%|██████████| 10/10 [00:02<00:00]\nepoch 1/3\n"
    assert site.without_progress(text) == "start\nepoch 1/3\n"


def test_a_row_page_opens_with_its_test_metrics_and_says_the_disclaimer_once():
    import nbformat
    import pandas as pd

    board = pd.DataFrame(
        {
            "variant": ["m", "m+tta"],
            **{
                f"{k}{s}": [0.5, 0.6]
                for k in ("balanced_accuracy", "macro_auc", "malignant_auc")
                for s in ("", "_lo", "_hi")
            },
            "ece": [0.1, 0.2],
        }
    )
    strip = site.metrics_strip(board, "backbone@m")
    assert "<b>m</b> on the test split: balanced accuracy 0.500 [0.500, 0.500]" in strip and "<b>m+tta</b>" in strip
    assert site.metrics_strip(board, "explain") == "" and site.metrics_strip(board, "eda") == ""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(
                "# Title\n\n> **Research and education only.** These models are not medical devices."
            )
        ]
    )
    page = site.chrome("variants/m.html", "synthetic", "", strip) + site.Renderer()(nb, "t")
    assert page.count("Research and education only") == 1 and "Title" in page


def test_the_comparison_page_gets_a_table_of_contents_of_its_sections():
    doc = (
        '<html><body><h2 id="A-b">A b<a class="anchor-link" href="#A-b">¶</a></h2><h2 id="C">C &amp; d</h2>'
        + '<h2 id="E">E</h2></body></html>'
    )
    page = site.with_toc(doc)
    assert "<nav class='ll-toc'>" in page and "<a href='#A-b'>A b</a>" in page and "<a href='#C'>C &amp; d</a>" in page
    assert site.with_toc("<html><body><h2 id='x'>x</h2></body></html>").count("ll-toc") == 0  # short pages: none
