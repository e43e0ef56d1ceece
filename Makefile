# EdgeOps developer entry points. Everything installs into .venv and the user cache dir.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# dev: tests, linters, etcd, sample datasets; train: TensorFlow for the trainer Jobs the
# local node runs in this same environment; serving: KServe for the predictor tests;
# gateway: FastAPI and uvicorn for the fleet gateway.
EXTRAS ?= dev,train,serving,gateway

.PHONY: setup up down status test test-unit test-integration lint crds crds-check clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

## setup: system packages, Python env, and the Go-built control plane (cached after the first run)
setup: $(VENV)/.installed-$(EXTRAS)
	./scripts/install-system-deps.sh
	$(PY) -m edgeops.devcluster.build

## up: set everything up, start the local control plane with the operator, run the demo
up: setup
	$(VENV)/bin/edgeops dev up
	$(VENV)/bin/edgeops dev demo
	@echo "Run: eval \"\$$($(VENV)/bin/edgeops dev env)\"  then  kubectl get edgeops -A"

down:
	$(VENV)/bin/edgeops dev down

status:
	$(VENV)/bin/edgeops dev status

## test: lint, then unit and integration tests against a fresh session devcluster
test: setup lint
	$(PY) -m pytest -q

test-unit: $(VENV)/.installed-$(EXTRAS)
	$(PY) -m pytest -q tests/unit

lint: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/ruff check operator tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m edgeops.crdgen --check

crds: $(VENV)/.installed-$(EXTRAS)
	$(PY) -m edgeops.crdgen

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
