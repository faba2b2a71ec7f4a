# The README's two commands: `make run` (set up, then run the main job) and `make test`
# (set up, then lint, type-check and test). Both create or update .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.prmodel-installed

.PHONY: run test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,scalesim]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/prmodel quickstart

lint: $(STAMP)
	$(BIN)/ruff check prmodel tests benchmarks
	$(BIN)/ruff format --check prmodel tests benchmarks docs
	$(BIN)/mypy prmodel benchmarks

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
