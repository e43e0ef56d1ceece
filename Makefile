# EdgeOps developer entry points. Everything installs into .venv and the user cache dir.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# dev: tests, linters, etcd, sample datasets; train: TensorFlow for the trainer Jobs the
# local node runs in this same environment; serving: KServe for the predictor tests;
# gateway: FastAPI and uvicorn for the fleet gateway.
EXTRAS ?= dev,train,serving,gateway

.PHONY: setup up down status test test-unit test-integration lint crds crds-check clean \
	images kind-up kind-demo kind-down

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
	$(PY) -m pytest -q --durations=25

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

# --- kind (needs Docker, kind, kubectl and helm; not the devcluster) ---------------------------
KIND_CLUSTER ?= edgeops
# The operator starts trainer and predictor pods with its own version's tag, so the images
# carry the chart's appVersion.
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/edgeops/Chart.yaml)
IMAGES := operator trainer gateway device-agent predictor

## images: build every image from images/<component>/Dockerfile (context: the repository root)
images:
	for image in $(IMAGES); do \
	  docker build -f images/$$image/Dockerfile -t ghcr.io/edgeops/$$image:$(IMAGE_TAG) . || exit 1; \
	done

## kind-up: create the kind cluster (kind-config.yaml), build and load the images, install
## MinIO and the chart, then run the demo against it
kind-up: images
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml
	for image in $(IMAGES); do \
	  kind load docker-image --name $(KIND_CLUSTER) ghcr.io/edgeops/$$image:$(IMAGE_TAG) || exit 1; \
	done
	kubectl --context kind-$(KIND_CLUSTER) create namespace edgeops-system --dry-run=client -o yaml \
	  | kubectl --context kind-$(KIND_CLUSTER) apply -f -
	kubectl --context kind-$(KIND_CLUSTER) apply -f deploy/kind/minio.yaml
	kubectl --context kind-$(KIND_CLUSTER) -n edgeops-system rollout status deploy/minio --timeout=180s
	helm --kube-context kind-$(KIND_CLUSTER) upgrade --install edgeops charts/edgeops -n edgeops-system \
	  --set image.tag=$(IMAGE_TAG) --set gateway.image.tag=$(IMAGE_TAG) \
	  --set gateway.service.type=NodePort --set gateway.service.nodePort=30088 \
	  --set-string 'gateway.nodeSelector.edgeops\.dev/gateway=true' \
	  --wait --timeout 5m
	helm --kube-context kind-$(KIND_CLUSTER) test edgeops -n edgeops-system
	$(MAKE) kind-demo

## kind-demo: the sensor-fleet example in namespace sensor-fleet, followed until the model is Ready
kind-demo:
	kubectl --context kind-$(KIND_CLUSTER) create namespace sensor-fleet --dry-run=client -o yaml \
	  | kubectl --context kind-$(KIND_CLUSTER) apply -f -
	for f in examples/sensor-fleet/0*.yaml; do \
	  kubectl --context kind-$(KIND_CLUSTER) apply -n sensor-fleet -f $$f || exit 1; \
	done
	kubectl --context kind-$(KIND_CLUSTER) -n sensor-fleet wait --for=condition=Ready \
	  dataset/basic-motions edgemodel/motion-classifier --timeout=30m
	kubectl --context kind-$(KIND_CLUSTER) get edgeops -n sensor-fleet

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)
