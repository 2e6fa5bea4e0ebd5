"""Hostile input and misuse, one test per case (issue 16): every case asserts the named error or the reported
skip, and that nothing else changed. Research and education only: not for diagnosis.

Cases, in the order of the issue:
1. a dataset whose every field is an HTML payload, through the whole pipeline, opened in headless Chromium;
2. model files that would run code; variant and dataset names that would leave results/;
3. import-data: source inside target, target inside source, a failed --force, symlinks, the missing-file count;
4. dataset CSV paths outside the dataset folder;
5. images: decompression bombs, tiny images, predict's partial results, class-folder ids, unparsable metadata;
6. params: read as DVC reads them, validated before DVC removes any output;
7. process hygiene: a stage's children die with it, an orphan's outputs are not written twice, predict's files.
"""

from __future__ import annotations

import json
import shutil

import pytest

from layouts import XSS_IMG, XSS_SCRIPT, write_hostile_csv
from pipeline_repo import make_repo, run


# --- 1. every user string reaches a page as text -------------------------------------------------------------


def _hostile_params(params: dict) -> None:
    params["dataset"] = "hostile"
    params["dataset_source"] = "data/hostile"
    for section, values in {"prepare": {"image_size": 24, "backbone_image_size": 32, "on_bad": "error"},
                            "train": {"epochs": 2, "patience": 2, "filters": [8, 16], "dense_units": 16},
                            "tabular": {"n_estimators": 20, "patience": 5},
                            "explain": {"variants": ["cnn_baseline"]},
                            "compare": {"bootstrap": 20, "pairs": []}}.items():
        params.setdefault(section, {}).update(values)
    params["variants"] = {k: {**params["variants"][k], "description": f"{XSS_SCRIPT} {k}"}
                          for k in ("cnn_baseline", "cnn_class_weights")}
    params["probes"], params["finetunes"] = {}, {}
    params["tabulars"] = {"meta_gbm": {**params["tabulars"]["meta_gbm"], "description": XSS_IMG}}
    params["ensembles"] = {"mixed": {"description": XSS_IMG, "method": "mean", "members": ["cnn_class_weights", "meta_gbm"]}}


@pytest.mark.slow
def test_every_user_string_is_text_on_every_page(tmp_path):
    from lesionlab.browser import Browser, chromium_binary

    chromium_binary()   # the check needs a browser: `make test` installs one
    repo = tmp_path / "repo"
    repo.mkdir()
    env, _ = make_repo(repo, _hostile_params)
    (repo / "data" / "hostile").mkdir(parents=True)
    write_hostile_csv(repo / "data" / "hostile")
    run(["dvc", "repro"], repo, env)

    pages = sorted((repo / "reports" / "hostile").rglob("*.html"))
    assert len(pages) >= 8, pages
    literal, ran = {}, []
    with Browser() as browser:
        for page in pages:
            browser.open(page)
            state = browser.evaluate("({pwned: document.body.dataset.pwned || null, text: document.body.innerText, "
                                     "scripts: document.scripts.length, "
                                     "hrefs: Array.from(document.links).map(a => a.getAttribute('href'))})")
            if state["pwned"] is not None or any(h.strip().lower().startswith("javascript:") for h in state["hrefs"]):
                ran.append(str(page.relative_to(repo)))
            literal[page.name] = XSS_IMG in state["text"] or XSS_SCRIPT in state["text"]
    assert not ran, f"a payload ran (or a javascript: link is offered) in {ran}"
    # the payloads show as the text they are where the pages list what the user supplied
    for name in ("eda.html", "compare.html", "cnn_baseline.html", "meta_gbm.html", "mixed.html"):
        assert literal.get(name), f"{name}: the user's strings are not shown literally"


def test_tables_escape_every_string_but_the_markup_the_package_built():
    import pandas as pd

    from lesionlab.report import Html, link, table_html

    table = pd.DataFrame({"site": [XSS_IMG, "back"], "report": [link("variants/a.html", XSS_SCRIPT), Html("<b>0.5</b>")],
                          "n": [1, 2]}, index=[XSS_SCRIPT, "x"])
    table.columns.name = XSS_IMG
    out = table_html(table, index=True)
    assert "<img" not in out and "<script" not in out
    assert "&lt;img src=x onerror=document.body.dataset.pwned=1&gt;" in out
    assert '<a href="variants/a.html">&lt;script&gt;' in out and "<b>0.5</b>" in out


def test_a_dollar_in_a_user_string_is_text_in_figures(tmp_path):
    import matplotlib.pyplot as plt

    from lesionlab import figures  # noqa: F401  (sets text.parse_math off)

    fig, ax = plt.subplots()
    ax.set_title("trunk $\\frac{$ 'site'")
    fig.savefig(tmp_path / "figure.png")   # with TeX parsing on, this raises ParseFatalException
    assert (tmp_path / "figure.png").stat().st_size > 0
