"""Small HTML pieces the notebooks display: provenance, notes, links, tables.

Everything is inline HTML (no external CSS or scripts) so pages read offline.

Every string a user supplies (file names, ids, labels, metadata values, params values, card fields) is
hostile until escaped: :func:`esc` escapes one value for a piece of HTML; :func:`table_html` escapes every
string cell, index label and column name unless it is :class:`Html`, the mark of markup this package built
(with any user value inside it already escaped).
"""

from __future__ import annotations

import hashlib
import html
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class Html(str):
    """Markup built by this package (user values inside already passed through :func:`esc`): shown as is by
    :func:`table_html`. Any other string in a table is text and is escaped."""


def esc(value) -> str:
    """A value as HTML text: ``<``, ``>``, ``&`` and both quotes escaped (safe in element text and attributes)."""
    return html.escape(str(value), quote=True)


def anchor(name) -> str:
    """An element id for a user-named section (a variant): ``[A-Za-z0-9_.-]`` kept, anything else replaced, plus a
    short hash when something was replaced (two names never share an id). Safe in an attribute and in a URL."""
    text = str(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", text)
    if safe != text or not safe:
        safe += "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return safe


EXPLANATIONS = "explanations.html"  # the Grad-CAM page: a section per explained variant, id = anchor(variant)


def explanation_link(variant: str) -> str:
    """The URL (relative to reports/<ds>/) of a variant's section on the explanations page."""
    return f"{EXPLANATIONS}#{anchor(variant)}"


def _cell(value):
    return value if isinstance(value, Html) else esc(value) if isinstance(value, str) else value


_BOX = "border-left:4px solid {c};background:{bg};padding:8px 12px;margin:8px 0;"


def note_html(text: str) -> str:
    return f'<div style="{_BOX.format(c="#2c7fb8", bg="#eef5fb")}">{text}</div>'


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "notebooks", "dvc.yaml"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: the packages whose versions a page's provenance lists
PACKAGES = (
    "lesionlab",
    "numpy",
    "pandas",
    "scikit-learn",
    "tensorflow-cpu",
    "keras",
    "torch",
    "torchvision",
    "lightgbm",
    "papermill",
    "nbconvert",
    "dvc",
)


def package_versions() -> str:
    """``name version`` of each of :data:`PACKAGES` that is installed, comma-separated."""
    out = []
    for pkg in PACKAGES:
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def provenance_html(root: Path, dataset: str, stage: str, params: dict, seed: int) -> str:
    """Where a page came from: stage, dataset, seed, the params it read, package versions."""
    rows = {
        "stage": stage,
        "dataset": dataset,
        "seed": seed,
        "git commit of the code": git_commit(root),
        "python": platform.python_version(),
        "packages": package_versions(),
        "params": "<code>" + html.escape(repr(params)) + "</code>",
    }
    rows = {k: v if k == "params" else esc(v) for k, v in rows.items()}
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:12px'>{k}</th><td>{v}</td></tr>" for k, v in rows.items()
    )
    return f"<details><summary>Provenance</summary><table>{body}</table></details>"


def link(href: str, text) -> Html:
    """``<a href=...>text</a>`` with both escaped; a table shows it as a link."""
    return Html(f"<a href='{esc(href)}'>{esc(text)}</a>")


def links_html(items: list[tuple[str, str]]) -> str:
    return " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in items)


def table_html(df: pd.DataFrame, index: bool = False, table_id: str | None = None) -> str:
    """A DataFrame as a plain HTML table. String cells, index labels and column names are escaped, except
    :class:`Html` cells (links, bold best values: markup this package built); numbers are formatted by pandas."""
    from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

    shown = df.copy()
    for j, dtype in enumerate(shown.dtypes):
        if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype) or is_datetime64_any_dtype(dtype)):  # text, objects
            shown.isetitem(j, shown.iloc[:, j].astype(object).map(_cell))
    shown.columns = shown.columns.map(_cell) if shown.columns.nlevels == 1 else shown.columns
    shown.index = shown.index.map(_cell) if shown.index.nlevels == 1 else shown.index
    shown.columns.name = _cell(shown.columns.name) if shown.columns.name is not None else None
    shown.index.name = _cell(shown.index.name) if shown.index.name is not None else None
    return shown.to_html(index=index, escape=False, border=0, na_rep="–", table_id=table_id)


def weights_html(weights: dict, device: str) -> str:
    """Where a variant's starting weights came from (file, sha256, place found) and the device it trained on."""
    if weights.get("weights") == "random":
        text = "<b>random initialisation</b> (no pretrained weights)"
    else:
        text = (
            f"ImageNet weights <code>{html.escape(weights['file'])}</code>, sha256 "
            f"<code>{esc(weights['sha256'])}</code>, found in {html.escape(weights['source'])}"
        )
    return note_html(
        f"Backbone <b>{html.escape(weights['backbone'])}</b> started from {text}. Device: <b>{esc(device)}</b>."
    )


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
    rules = "\n".join(
        f"#{i}:checked ~ #{i}-panel {{ display:block; }}\n#{i}:checked + label {{ background:#fff; "
        "border-color:#2c7fb8; }"
        for i in ids
    )
    heads = "".join(
        f'<input type="radio" name="{group}" id="{i}"{" checked" if n == 0 else ""}>'
        f'<label for="{i}">{html.escape(title)}</label>'
        for n, (i, title) in enumerate(zip(ids, panels))
    )
    bodies = "".join(f'<div class="ll-panel" id="{i}-panel">{body}</div>' for i, body in zip(ids, panels.values()))
    return _TABS_CSS.format(rules=rules) + f'<div class="ll-tabs">{heads}{bodies}</div>'
