"""Developer tooling, kept out of the importable package: the benchmark (``python -m tools.bench``, ``make bench``)
and headless Chromium for the report-site tests and screenshots (``python -m tools.browser PAGE OUT``).
Run from the repository root; they use the installed ``lesionlab`` package."""
