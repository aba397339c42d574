# Entry points (see README): `make run`, `make view` and `make test`. Each creates .venv on first use.
# `make docs` regenerates docs/cli.md from the parsers (tests/test_cli_reference.py checks it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Another MXNet wheel, e.g. make run MXNET=mxnet-cu112==1.9.1 (never two of them at once)
MXNET ?= mxnet==1.9.1
ARGS ?=

.PHONY: install run view test lint format bench docs clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	GLUON_TRIPLET_MXNET="$(MXNET)" $(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python run_train.py $(ARGS)

# TensorBoard on the runs in logs/ (or one of them: make view ARGS=logs/<run>)
view: install
	$(BIN)/gluon-triplet view $(ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gluon_triplet
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/speed.py

docs: install
	$(BIN)/python -m gluon_triplet.cli.reference --out docs/cli.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
