# Two commands set everything up on a fresh machine (Python 3.10+, no GPU needed):
#   make demo   install into .venv, train the default VAE on the bundled MNIST sample
#   make test   install into .venv, run the test suite, the linter and the docs build
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pyrovae train --out runs/demo --force

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal
	$(BIN)/ruff check pyrovae tests examples benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check pyrovae tests examples benchmarks
	$(BIN)/ruff format --check pyrovae tests examples benchmarks
	$(BIN)/lint-imports

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python benchmarks/train_vs_pytorch.py

clean:
	rm -rf $(VENV) runs build *.egg-info
