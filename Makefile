# One command each on a fresh machine: `make train`, `make test`.
# Everything runs from a local virtualenv in .venv, created on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/mnist-400-25-10.yaml
STAMP  := $(VENV)/.installed

.PHONY: install train test check lint format bench reproduce clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/mlp train --config $(CONFIG)

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
