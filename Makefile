# Two entry points, both self-contained on a fresh machine:
#   make demo   -- create the venv, install, fit on bundled real data, print scores, write a plot
#   make test   -- create the venv, install, run the default (fast) test suite
# and the documentation site:
#   make docs   -- build it into build/docs/html (warnings are errors; offline, runs no tutorial)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow lint docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0 -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dev,plot,bench,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m latentode.demo --out out/demo_forecast.png

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check latentode tests benchmarks tutorials docs

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html -d build/docs/doctrees docs build/docs/html
	@echo "open build/docs/html/index.html"

clean:
	rm -rf $(VENV) out build *.egg-info docs/api docs/tutorials
