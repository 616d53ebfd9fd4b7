# One command each from a fresh clone: `make test`, `make demo`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.metavoxel-installed
RUNTIME := $(VENV)/.metavoxel-runtime

.PHONY: install test test-all demo schema bench clean

install: $(STAMP)

# torch is pinned and installed first, so that `pip install -e .` finds it and pulls no other build. Which build:
# - a torch 2.13.0 that pip's own configuration already offers (a find-links folder or a local index, as on an
#   offline machine) is installed as it is;
# - otherwise, with no NVIDIA GPU (no `nvidia-smi`), the CPU build from PyTorch's CPU index (about 200 MB
#   instead of several GB of CUDA wheels);
# - with `nvidia-smi` present, PyPI's default build, which on Linux is a CUDA build.
# For a CUDA build where nvidia-smi is absent (e.g. building an image), name PyTorch's index for your CUDA:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu128   (the cuXXX folders are listed on pytorch.org)
TORCH       := torch==2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

# The demo needs only the runtime; the tests add the dev extras (pytest, hypothesis, triton, ...).
$(RUNTIME): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH_INDEX)" ] && ! $(PY) -m pip install -q --dry-run --no-index --no-deps "$(TORCH)" >/dev/null 2>&1; \
	then $(PY) -m pip install -q "$(TORCH)" --index-url "$(TORCH_INDEX)"; \
	else $(PY) -m pip install -q "$(TORCH)"; fi
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
