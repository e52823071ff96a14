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

# The test files run side by side, one worker per core (at most 4), each file's tests in one worker so that a
# module's fixtures are built once: on the 2-core VM, 8.5 minutes with the docker and Chromium tests skipped.
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadfile

test: setup
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/pipeline.py $(ARGS)

bench-training: setup
	$(BIN)/python benchmarks/training.py $(ARGS)

bench-search: setup
	$(BIN)/python benchmarks/search.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
