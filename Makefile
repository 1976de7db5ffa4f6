# teachcache: `make demo` runs the main job on the embedded default, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.toml
DATA ?= data/demo
STORE ?= runs/demo/store

# No model hub is reachable: everything loads from local files or installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup data extract-teachers teachers train-student ablate demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

data: $(DATA)/videos.parquet

$(DATA)/videos.parquet: $(STAMP)
	$(BIN)/teachcache synth --config $(CONFIG) --out $(DATA)

extract-teachers: setup data
	$(BIN)/teachcache extract --config $(CONFIG) --set extract.data=$(DATA) --set extract.store=$(STORE)
	$(BIN)/teachcache info $(STORE)

teachers: setup
	$(BIN)/teachcache teachers $(STORE) --config $(CONFIG) --set extract.data=$(DATA) --set extract.store=$(STORE)

train-student: setup
	$(BIN)/teachcache train --config $(CONFIG) --set extract.data=$(DATA) --set extract.store=$(STORE)

ablate: setup
	$(BIN)/teachcache ablate --config $(CONFIG) --set extract.data=$(DATA) --set extract.store=$(STORE)

# stage one (with the teachers' fitting), the teacher report card, then stage two
demo: extract-teachers
	$(MAKE) --no-print-directory teachers
	$(MAKE) --no-print-directory train-student

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/extraction.py --out runs/bench

clean:
	rm -rf runs data/demo
