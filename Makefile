# movierec: the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format clean help images

help:
	@echo "make demo           set up .venv and run the whole loop on embedded defaults"
	@echo "make test           set up .venv, start the real services, run every test"
	@echo "make lint           ruff + mypy + actionlint"
	@echo "make images         build the app and infrastructure images (no docker), import them"
	@echo "make services-up    start Kafka, PostgreSQL, MLflow, Prometheus, Alertmanager, a one-node Kubernetes"
	@echo "make services-down  stop them"

install: $(STAMP)

# --no-compile: byte-compiling every installed module took a minute of the install's 1.5 on
# 2 cores; Python compiles what it imports on first use instead.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile --upgrade pip setuptools wheel
	$(BIN)/pip install -q --no-compile -e '.[dev]'
	@touch $@

demo: install
	$(BIN)/movierec demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	actionlint="$$($(BIN)/python -m harness.actionlint_build)" && "$$actionlint"

# Every image the chart runs on the harness node, built without docker and cached by content;
# prints one image reference per line (logs on stderr). Needs root (debootstrap, chroot).
images: install
	@$(BIN)/python -m harness images

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Services are started once for the whole run and always stopped, also when tests fail; the
# images are built (or found cached) and imported into the node's containerd in between.
# harness/testrun.py runs the cluster e2e beside the rest of the suite (PYTEST_ARGS: one run).
test: install services-build
	@rc=0; $(MAKE) --no-print-directory services-up || exit 1; \
	$(MAKE) --no-print-directory images && \
	$(BIN)/ruff check . && $(BIN)/python -m harness.testrun $(PYTEST_ARGS) || rc=$$?; \
	$(MAKE) --no-print-directory services-down; exit $$rc

clean:
	rm -rf var demo-output .pytest_cache .mypy_cache .ruff_cache

-include harness/services.mk
