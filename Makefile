# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean system-deps

# Debian packages some tests drive: chromium (MLflow UI browser test), genometools (gt gff3validator),
# slurmctld slurmd slurm-client munge postgresql (the one-node SLURM cluster and PostgreSQL server). Skipped where already present.
SYSTEM_PACKAGES := chromium genometools slurmctld slurmd slurm-client munge postgresql
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dga search experiments/quickstart.toml

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)   # the tests not marked slow (under 3 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)        # ruff and mypy, configured in pyproject.toml (CI runs this too)
	$(BIN)/ruff check dga tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/dga prepare --dataset athaliana-chr1
	$(BIN)/python benchmarks/bench_train.py --store stores/athaliana-chr1

clean:
	rm -rf $(VENV) stores
