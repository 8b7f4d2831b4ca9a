# Two entry points: `make demo` and `make test`. Both create .venv when missing and install
# torch==2.13.0 first (a plain `torch` requirement would pull several GB of CUDA packages),
# then this package with its dev extra. Re-running is quick: the install is stamped.
# Everything is installed in .venv: the other targets (app, cli, lab, test-quick, ...) run from it,
# so no activation step is needed (or run `source .venv/bin/activate` once to use `larp-lab` directly).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.larp_lab-installed

.PHONY: setup demo app cli lab test test-quick lint clean-venv
ARGS ?=

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# The main job: the browser app on the bundled models (checkpoints/), offline, http://127.0.0.1:7860
demo: setup
	HF_HUB_OFFLINE=1 $(PY) app.py

# The app with options, e.g. `make app ARGS="--port 8000 --tokenizer checkpoints/larp-tiny-tokenizer"`
app: setup
	$(PY) app.py $(ARGS)

# The command line, e.g. `make cli ARGS="info checkpoints/larp-tiny-tokenizer"` (same as .venv/bin/larp-lab ...)
cli: setup
	$(VENV)/bin/larp-lab $(ARGS)

# JupyterLab on the teaching notebooks (notebooks/*.ipynb), http://127.0.0.1:8888
lab: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser $(ARGS)

# The whole suite, as CI runs it (browser test, notebooks, DDP and kill tests included): about 6 minutes
# on a quiet 2-core machine. Progress is printed per file.
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

# Everything but the browser, notebook, DDP, kill and other slow tests: under 2 minutes.
test-quick: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check larp_lab tests app.py scripts notebooks benchmarks experiments
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)

# Rewrite notebooks/*.ipynb from their sources notebooks/src/*.py (jupytext percent format): output-free,
# fixed metadata and cell ids, so an unchanged source gives the same bytes. tests/test_notebook_sources.py
# fails when a committed notebook differs from its source.
.PHONY: notebooks
notebooks: setup
	$(PY) notebooks/build.py
