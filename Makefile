# Two entry points, both self-contained on a fresh machine:
#   make demo   -- create the venv, install, fit on bundled real data, print scores, write a plot
#   make test   -- create the venv, install, run the default (fast) test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0 -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dev,plot,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m latentode.demo --out out/demo_forecast.png

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check latentode tests benchmarks tutorials

clean:
	rm -rf $(VENV) out build *.egg-info
