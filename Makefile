# One command each on a fresh machine: `make train`, `make test`.
# Everything runs from a local virtualenv in .venv, created on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A shipped config's name (`mlp config list`) or a YAML file; empty: mlp's default config.
CONFIG ?=
STAMP  := $(VENV)/.installed

.PHONY: install train test check lint format bench reproduce clean

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

bench: $(STAMP)
	$(BIN)/python -m bench

# Train every shipped config and check its test accuracy against the number it states.
reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
