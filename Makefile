# Two entry points that work on a fresh machine (Python 3.11, pip reaching PyPI):
#   make train   set up .venv and run the main job on the embedded default data
#   make test    set up .venv and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup train test bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

train: setup
	$(PY) -m mmembed.demo --out outputs/demo
	$(PY) scripts/bench_embedding.py

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -m "not gpu"

bench: setup
	$(PY) scripts/bench_embedding.py
