# tomopick — every target installs what it needs into .venv on its own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tomopick-installed
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch first: an unpinned torch would pull several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install -q -e ".[test,distributed,search,napari]"
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then echo "error: CUDA packages were installed" >&2; exit 1; fi
	@touch $(STAMP)

install: $(STAMP)

# one pytest-xdist worker per core (CI: 2), one torch thread each (tests/conftest.py)
test: $(STAMP)
	$(PY) -m pytest -q -n auto $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/tomopick demo --out demo_out --overwrite

bench: $(STAMP)
	$(PY) bench/run.py

lock: $(STAMP)
	@{ echo "# Pinned versions that resolve quickly and work together (regenerate: make lock). torch must stay 2.13.0 (CPU wheel)."; \
	  $(PY) -m pip freeze 2>/dev/null | grep -v -E '^-e|^tomopick' | sed 's/^torch==.*/torch==2.13.0/'; } > constraints.txt

clean:
	rm -rf $(VENV) demo_out .pytest_cache
