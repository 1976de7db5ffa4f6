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

RUN ?= runs/demo/student

.PHONY: setup data extract-teachers teachers train-student report ablate demo browser test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test]"
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

report: setup
	$(BIN)/teachcache report $(RUN)

ablate: setup
	$(BIN)/teachcache ablate --config $(CONFIG) --set extract.data=$(DATA) --set extract.store=$(STORE)

# stage one (with the teachers' fitting), the teacher report card, stage two, the HTML report
demo: extract-teachers
	$(MAKE) --no-print-directory teachers
	$(MAKE) --no-print-directory train-student
	$(MAKE) --no-print-directory report

# headless Chromium for the tests that open the HTML pages (Debian's package, installed when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the browser tests will fail in CI and be skipped elsewhere"

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/extraction.py --out runs/bench
	$(BIN)/python bench/cache_payoff.py --out runs/bench
	$(BIN)/python bench/loader.py --out runs/bench
	$(BIN)/python bench/retrieval.py --out runs/bench

clean:
	rm -rf runs data/demo
