# One command each from a fresh clone: `make test`, `make demo`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.metavoxel-installed
RUNTIME := $(VENV)/.metavoxel-runtime

.PHONY: install test test-all demo schema bench clean

install: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull several GB of CUDA wheels.
# The demo needs only the runtime; the tests add the dev extras (pytest, hypothesis, triton, ...).
$(RUNTIME): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP): $(RUNTIME)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Two worker processes of one torch thread each (tests/conftest.py): most tests are Python-bound, and a
# file's tests stay in one worker so its module fixtures are built once.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

demo: $(RUNTIME)
	$(VENV)/bin/metavoxel demo

schema: $(RUNTIME)
	$(VENV)/bin/metavoxel schema --out schemas

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
