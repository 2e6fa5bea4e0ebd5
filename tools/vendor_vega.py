"""Build ``tools/dvc-plots/offline.html``: the HTML template ``dvc plots show`` fills, with vega, vega-lite and
vega-embed inlined, so the page renders with no network (DVC's default template loads them from a CDN).

The versions are the ones DVC's renderer (dvc-render) names for the Vega-Lite v5 specs it writes. The packages
come from the npm registry (``npm pack``); their minified builds and BSD-3-Clause licences are inlined.
``.dvc/config`` points ``plots.html_template`` at the result. Rebuild with ``python -m tools.vendor_vega`` after
changing :data:`PACKAGES`; the committed file is what users get, offline.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: npm package -> (version, the build inlined)
PACKAGES = {
    "vega": ("5.20.2", "build/vega.min.js"),
    "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.18.2", "build/vega-embed.min.js"),
}
OUT = Path(__file__).resolve().parent / "dvc-plots" / "offline.html"

TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>lesionlab: DVC plots (offline)</title>
<!-- vega, vega-lite and vega-embed inlined by tools/vendor_vega.py (no CDN: this page renders offline) -->
{inlined}
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-spacing: 15px; }}
.notice {{ background: #fff4e5; border-left: 4px solid #e8a33d; padding: .6em 1em; max-width: 60em; }}
</style>
</head>
<body>
<p class="notice"><b>Research and education only.</b> These models are not medical devices and must not be used to
diagnose, treat or triage any person.</p>
{{plot_divs}}
</body>
</html>
"""


def _fetch(name: str, version: str, member: str, work: Path) -> tuple[str, str]:
    subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=work, check=True, capture_output=True)
    with tarfile.open(work / f"{name}-{version}.tgz") as tar:
        js = tar.extractfile(f"package/{member}").read().decode("utf-8")
        licence = tar.extractfile("package/LICENSE").read().decode("utf-8")
    return js, licence


def build() -> Path:
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, member) in PACKAGES.items():
            js, licence = _fetch(name, version, member, Path(tmp))
            if "</script" in js.lower() or "{plot_divs}" in js:
                raise ValueError(f"{name}: its build cannot be inlined as is")
            parts.append(f"<!-- {name} {version} ({member}); licence:\n{licence.strip()}\n-->\n<script>{js}</script>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(TEMPLATE.format(refresh_tag="{refresh_tag}", inlined="\n".join(parts)), encoding="utf-8")
    return OUT


if __name__ == "__main__":
    path = build()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
