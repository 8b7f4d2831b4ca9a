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

# Until the bundled models ship, the demo runs the whole reconstruct pipeline on the example clip
# with an UNTRAINED tiny tokenizer (random weights, clearly labelled): it proves the install works.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m larp_lab reconstruct examples/bigbuckbunny_128.mp4 \
		-o outputs/demo_reconstruction.mp4 --tokenizer untrained:tiny --side-by-side --tokens outputs/demo_tokens.json

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check larp_lab tests app.py

clean-venv:
	rm -rf $(VENV)
