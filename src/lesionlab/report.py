"""Small HTML pieces the notebooks display: provenance, notes, links, tables.

Everything is inline HTML (no external CSS or scripts) so pages read offline.
"""

from __future__ import annotations

import html
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


_BOX = "border-left:4px solid {c};background:{bg};padding:8px 12px;margin:8px 0;"


def note_html(text: str) -> str:
    return f'<div style="{_BOX.format(c="#2c7fb8", bg="#eef5fb")}">{text}</div>'


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "notebooks",
                                "dvc.yaml"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance_html(root: Path, dataset: str, stage: str, params: dict, seed: int) -> str:
    """Where a page came from: stage, dataset, seed, the params it read, package versions."""
    versions = []
    for pkg in ("lesionlab", "numpy", "pandas", "scikit-learn", "tensorflow-cpu", "keras", "torch", "torchvision",
                "papermill", "dvc"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    rows = {
        "stage": stage,
        "dataset": dataset,
        "seed": seed,
        "git commit of the code": git_commit(root),
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "params": "<code>" + html.escape(repr(params)) + "</code>",
    }
    body = "".join(f"<tr><th style='text-align:left;padding-right:12px'>{k}</th><td>{v}</td></tr>" for k, v in rows.items())
    return f"<details><summary>Provenance</summary><table>{body}</table></details>"


def links_html(items: list[tuple[str, str]]) -> str:
    return " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in items)


def table_html(df: pd.DataFrame, index: bool = False, table_id: str | None = None) -> str:
    """A DataFrame as a plain HTML table (cells are trusted HTML built by this package)."""
    return df.to_html(index=index, escape=False, border=0, na_rep="–", table_id=table_id)


def weights_html(weights: dict, device: str) -> str:
    """Where a variant's starting weights came from (file, sha256, place found) and the device it trained on."""
    if weights.get("weights") == "random":
        text = "<b>random initialisation</b> (no pretrained weights)"
    else:
        text = (f"ImageNet weights <code>{html.escape(weights['file'])}</code>, sha256 "
                f"<code>{weights['sha256']}</code>, found in {html.escape(weights['source'])}")
    return note_html(f"Backbone <b>{html.escape(weights['backbone'])}</b> started from {text}. Device: <b>{device}</b>.")


_TABS_CSS = """<style>
.ll-tabs > input {{ position:absolute; opacity:0; }}
.ll-tabs > label {{ display:inline-block; padding:6px 14px; margin-right:4px; border:1px solid #ccc;
  border-bottom:none; border-radius:6px 6px 0 0; background:#f3f3f3; cursor:pointer; font-weight:600; }}
.ll-tabs > .ll-panel {{ display:none; border-top:1px solid #ccc; padding-top:8px; }}
{rules}
</style>"""


def tabs_html(panels: dict[str, str], group: str) -> str:
    """Tabs without JavaScript (radio buttons + CSS): the first panel shows, a click on a label shows another."""
    ids = [f"{group}-{i}" for i in range(len(panels))]
    rules = "\n".join(f"#{i}:checked ~ #{i}-panel {{ display:block; }}\n#{i}:checked + label {{ background:#fff; "
                      "border-color:#2c7fb8; }" for i in ids)
    heads = "".join(f'<input type="radio" name="{group}" id="{i}"{" checked" if n == 0 else ""}>'
                    f'<label for="{i}">{html.escape(title)}</label>' for n, (i, title) in enumerate(zip(ids, panels)))
    bodies = "".join(f'<div class="ll-panel" id="{i}-panel">{body}</div>' for i, body in zip(ids, panels.values()))
    return _TABS_CSS.format(rules=rules) + f'<div class="ll-tabs">{heads}{bodies}</div>'
