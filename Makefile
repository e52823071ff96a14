# The two commands: `make run` (the whole pipeline on its defaults) and `make test`.
# Both create .venv and install tabduel on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned first: on this machine pip takes the local CPU wheel; on a GPU box PyPI's build of the
# same version, which includes CUDA. An unpinned torch would pull a multi-GB CUDA build here too.
TORCH_VERSION ?= 2.13.0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test bench bench-training bench-search clean

$(BIN)/tabduel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[test,peers]'
	touch $@

setup: $(BIN)/tabduel

run: setup
	$(BIN)/tabduel run $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/pipeline.py $(ARGS)

bench-training: setup
	$(BIN)/python benchmarks/training.py $(ARGS)

bench-search: setup
	$(BIN)/python benchmarks/search.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
