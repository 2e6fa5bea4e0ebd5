# lesionlab: `make repro` runs the whole pipeline, `make test` runs the tests.
# Both create .venv and install the pinned stack first (requirements.lock).
# Research and education only: the models are not for diagnosis.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lesionlab-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup browser repro test lint format bench bench-allocator bench-threads frontier gpu-check lab check-params metrics plots exps clean-venv

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11); set PYTHON=..."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing the pinned stack into $(VENV) (requirements.lock, ~7.5 GB: a few minutes the first time)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-input -r requirements.lock
	@echo "[setup] installing lesionlab itself (editable) and its Jupyter kernel"
	$(PY) -m pip install --quiet --no-input --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name lesionlab --display-name "lesionlab (.venv)" >/dev/null
	@touch $@

check-params: setup
	$(PY) -m lesionlab check-params

# lanes of `lesionlab repro` (src/lesionlab/pipeline/lanes.py): the CNN, probe and metadata runs JOBS at a time;
# the same outputs and dvc.lock as a plain `dvc repro` (JOBS=1: one stage at a time)
JOBS ?= 2

repro: check-params  ## the main job: the whole pipeline on params.yaml's dataset (default: synthetic, offline)
	$(PY) -m lesionlab repro --jobs $(JOBS)

browser:  ## headless Chromium (Debian package) for the report-site tests and `python -m tools.browser PAGE OUT`
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing chromium (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup browser lint  ## ruff, then unit tests + one end-to-end `dvc repro` per layout + the report site in Chromium
	$(PY) -m pytest

lint: setup  ## ruff (pyproject.toml [tool.ruff]): lint, and formatting checked, over src/, tools/, tests/, notebooks/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup  ## apply ruff's formatting and its safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup  ## cost of the pipeline on this machine (scratch copy; ~45 min on 2 CPUs) -> reports/bench.json + docs/cost.md table
	$(PY) -m tools.bench $(BENCH_ARGS)

bench-allocator: setup  ## glibc malloc defaults vs freed memory kept, same stages alternating (~12 min) -> reports/bench-allocator.json + docs/cost.md
	$(PY) -m tools.bench_allocator

bench-threads: setup  ## Keras CNN under fixed TensorFlow thread counts and two trainings at once (~6 min) -> reports/keras-threads.json + docs/cost.md
	$(PY) -m tools.keras_threads

# the rest of a HAM10000 run, outside the stages the backbone choice changes: the 2026-12-02 run took 136 min,
# of which 43 min fine-tunes and 7.5 min embeddings (its closing note); `make frontier FRONTIER_ARGS=...` to change
FRONTIER_ARGS ?= --rest-hours 1.43 --rest-source "2026-12-02 HAM10000 run: 136 min - 43 min fine-tunes - 7.5 min embeddings"
frontier: setup  ## HAM10000: short runs of Lite0/1/2 x 128/192/224 px -> reports/ham10000/frontier.json (~20 min on 2 CPUs)
	$(PY) -m tools.frontier $(FRONTIER_ARGS)
	$(PY) -m lesionlab docs

gpu-check: setup  ## on a GPU machine: one row per neural family, tiny config, Keras on torch; fails unless all ran on cuda
	$(PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

# JupyterLab at the repository root (notebooks/, results/, reports/ all browsable) with the project's kernel;
# a notebook run by hand writes to scratch/, never over DVC's outputs (src/lesionlab/pipeline/sandbox.py)
lab: setup
	jupyter lab --notebook-dir=. --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

metrics: setup
	dvc metrics show

# Experiments side by side, readable: what changed (params, headline metrics), not the hash of every file dependency
# that a change touches (`dvc exp show --only-changed` lists those too, and DVC has no switch to hide them).
EXPS_DROP ?= (results|reports)/[^:]*$$|params\.yaml$$|data$$|.*:(ece|malignant_auc|step)$$
exps:
	dvc exp show --only-changed --no-pager --drop '$(EXPS_DROP)' $(EXPS_ARGS)

plots: setup
	dvc plots show

clean-venv:
	rm -rf $(VENV)
