# Two entry points: `make demo` and `make test`. Both create .venv when missing and install
# torch==2.13.0 first (a plain `torch` requirement would pull several GB of CUDA packages),
# then this package with its dev extra. Re-running is quick: the install is stamped.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.larp_lab-installed

.PHONY: setup demo test lint clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# The main job: the browser app on the bundled models (checkpoints/), offline, http://127.0.0.1:7860
demo: setup
	HF_HUB_OFFLINE=1 $(PY) app.py

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check larp_lab tests app.py

clean-venv:
	rm -rf $(VENV)
