# Setup and entry points; every install step lives here so a fresh clone works.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision pinned to the builds available locally on the reference machine; override with TORCH_PINS=
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
export RAYDC_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[test,notebooks]'
	touch $(STAMP)

demo: install
	RAY_AUTH_MODE=disabled $(BIN)/raydc run studies/quickstart.yaml --out runs/quickstart

test: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
