# Two entry points that work on a fresh machine (Python 3.11, pip reaching PyPI):
#   make train   set up (apt packages + .venv), build the speech corpus, train + test the default ASR
#   make test    set up .venv and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python

# Debian packages the embedded corpora are generated from: flite voices and WordNet example
# sentences (speech; espeak-ng is the second synthesiser of its test_espeak set), the Noto emoji
# font with Unicode/CLDR names (captions).
APT_PACKAGES := flite espeak-ng wordnet-base fonts-noto-color-emoji unicode-data unicode-cldr-core

.PHONY: setup system-deps train demo test bench lint

setup: system-deps $(VENV)/.installed

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The main job: build the embedded speech corpus if missing (flite, ~1-2 min), train the default
# speech recogniser, test the best checkpoint and print test WER/CER.
train: setup
	$(PY) -m mmembed.train experiment=asr_default

# The SharedEmbedding demo on GloVe vectors (nearest neighbours, PCA/t-SNE plots).
demo: setup
	$(PY) -m mmembed.demo --out outputs/demo

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -m "not gpu"

bench: setup
	$(PY) scripts/bench_embedding.py
