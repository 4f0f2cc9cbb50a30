# One command each on a fresh machine: `make train`, `make test`.
# Everything runs from a local virtualenv in .venv, created on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A shipped config's name (`mlp config list`) or a YAML file; empty: mlp's default config.
CONFIG ?=
STAMP  := $(VENV)/.installed

# The same tests with every runtime dependency at the lower bound pyproject.toml declares
# (scripts/lowest_requirements.py); only the dev extra's test tools, at pip's choice, join them.
# Not jsonschema: it brings attrs, which the lowest rich's console imports whenever it is
# installed, and the start-up tests hold mlp's imports to what the package itself needs.
LOWEST       := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed
LOWEST_TOOLS := pytest hypothesis PyYAML

.PHONY: install train test check check-lowest lint format bench reproduce clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/mlp train $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

# The wheel test is left out: the virtualenv it makes installs the newest versions, which
# `make check` already tests. The tests of the other extras (export, ray, the browser) skip
# themselves when the extra is not installed, as here.
check-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/python -m pytest -q --ignore=tests/test_wheel.py

# Makefile: LOWEST_TOOLS is set here, and an environment made with other tools is not this one
$(LOWEST_STAMP): pyproject.toml scripts/lowest_requirements.py Makefile
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip packaging
	$(LOWEST)/bin/python scripts/lowest_requirements.py $(LOWEST_TOOLS) > $(LOWEST)/requirements.txt
	$(LOWEST)/bin/python -m pip install --quiet -e . -r $(LOWEST)/requirements.txt
	touch $@

bench: $(STAMP)
	$(BIN)/python -m bench

# Train every shipped config and check its test accuracy against the number it states.
reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
