# Two commands for a fresh machine (Python 3.11, no GPU, no conda):
#   make demo   set up .venv and run the workflow on the embedded demo clips
#   make test   set up .venv and run the tests (what CI runs)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "qc table: $(CURDIR)/results/qc.tsv"

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

lint: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest tests/test_lint.py

clean:
	rm -rf results logs benchmarks .snakemake
