# Both entry points build their own virtual environment, so nothing depends on what is installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/modalign: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a CPU wheel lies on disk; a looser range would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# tensorboard: the training-curve test runs instead of skipping.
	$(BIN)/pip install --quiet -e '.[test,federated,tensorboard]'
	touch $(BIN)/modalign

demo: $(BIN)/modalign
	$(BIN)/modalign demo

test: $(BIN)/modalign
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

lint: $(BIN)/modalign
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

bench: $(BIN)/modalign
	$(BIN)/python benchmarks/ot_vs_pot.py --sizes 500 1000

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
