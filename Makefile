# Two commands on a fresh machine: `make demo` and `make test`. Everything they need is
# installed here: the venv, Debian packages, generated gRPC code, and the servers tests use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

DEMO_OUT ?= out/demo.mp4

.PHONY: demo test test-slow lint format sysdeps venv venv-all protos services-up bench train-tiny clean

# --- bootstrap ---------------------------------------------------------------------------
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamps depend on pyproject.toml, so a changed pin reinstalls.
$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all]'
	touch $@ $(VENV)/.core-installed

venv: $(VENV)/.core-installed
venv-all: $(VENV)/.all-installed

sysdeps:
	@bash scripts/install-sysdeps.sh

protos: venv-all
	@bash scripts/gen-protos.sh $(BIN)/python

services-up:
	@bash scripts/services-up.sh

# --- user-facing ----------------------------------------------------------------------------
demo: sysdeps venv
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN)/lpm demo -o $(DEMO_OUT)

lint: venv-all
	$(BIN)/ruff check .

format: venv-all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: sysdeps venv-all protos services-up lint
	LPM_REQUIRE_SERVERS=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test-slow: sysdeps venv-all protos services-up
	$(BIN)/python -m pytest -q -m slow

bench: venv
	$(BIN)/lpm bench realtime --preset tiny --seconds 600 --json out/bench_realtime.json

# The whole tiny curriculum from `lpm data synth` on (about 2.9 h on 2 idle CPU cores; resumable:
# re-running continues where it stopped). docs/training.md has the recipe.
TRAIN_WORK ?= out/train-tiny
train-tiny: sysdeps venv-all
	$(BIN)/lpm train all --preset tiny --work $(TRAIN_WORK) --threads 2 --synth-minutes 12 \
		--ship model_core/assets/checkpoints/tiny

clean:
	rm -rf out build .pytest_cache
