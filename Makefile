# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dga prepare --dataset athaliana-chr1
	$(BIN)/dga train experiments/tiny.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/dga prepare --dataset athaliana-chr1
	$(BIN)/python benchmarks/bench_train.py --store stores/athaliana-chr1

clean:
	rm -rf $(VENV) stores
