# Two commands do everything: `make repro` (set up, then the default profile) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# the stages' `python -m stages.X` must find the venv's python, activated or not
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test clean-venv

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

setup: $(BIN)/.installed

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
