# teachcache: `make demo` runs the main job on the embedded default, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= demo
STUDY ?= demo-study
DATA ?= data/demo
STORE ?= runs/demo/store
RUN ?= runs/demo/student
LINT_TREE := .lint

# No model hub is reachable: everything loads from local files or installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup data extract-teachers teachers train-student report ablate experts-study demo browser lint test test-quick bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test,dev]"
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

# the teacher study over the demo's store (pipeline/configs/demo-study.toml)
ablate: setup
	$(BIN)/teachcache ablate --config $(STUDY) --set extract.data=$(DATA) --set extract.store=$(STORE)

# TeachText's video-side extension over the demo's clips (pipeline/configs/demo-experts.toml):
# a motion expert, two-expert ce teachers, a student on appearance alone; its own store
experts-study: setup data
	$(BIN)/teachcache extract --config demo-experts --set extract.data=$(DATA)
	$(BIN)/teachcache ablate --config demo-experts --set extract.data=$(DATA)

# stage one (with the teachers' fitting), the teacher report card, stage two, the HTML report
demo: extract-teachers
	$(MAKE) --no-print-directory teachers
	$(MAKE) --no-print-directory train-student
	$(MAKE) --no-print-directory report

# ruff (lint and format), mypy, and the layers contract (import-linter). The static tools read
# the installed layout (teachcache.cache -> cache/, ...) through a tree of links in $(LINT_TREE).
lint: setup
	@mkdir -p $(LINT_TREE)/teachcache && for p in cache stages pipeline; do ln -sfn ../../$$p $(LINT_TREE)/teachcache/$$p; done
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPYPATH=$(LINT_TREE) $(BIN)/mypy -p teachcache.cache -p teachcache.stages -p teachcache.pipeline
	PYTHONPATH=$(LINT_TREE) $(BIN)/lint-imports

# headless Chromium for the tests that open the HTML pages (Debian's package, installed when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the browser tests will fail in CI and be skipped elsewhere"

# the whole suite (the README's test command)
test: setup browser
	$(BIN)/python -m pytest -q

# the quick loop: everything but the slow tests (kill -9, torchrun, benchmark-sized runs)
test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/extraction.py --out runs/bench
	$(BIN)/python bench/cache_payoff.py --out runs/bench
	$(BIN)/python bench/loader.py --out runs/bench
	$(BIN)/python bench/retrieval.py --out runs/bench
	$(BIN)/python bench/official_backbones.py --out runs/bench

clean:
	rm -rf runs data/demo $(LINT_TREE)
