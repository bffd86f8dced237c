# lert-compress: `make` runs the embedded default recipe, `make test` runs the tests.
# Both create .venv and install into it when needed.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
recipe  ?= demo
ARGS    ?=
NPROC   ?= 1
OUT     ?= artifacts
PYTEST_ARGS ?=

.PHONY: all run install test test-slow lint format report gpu-check clean

all: run

# torch first, pinned, so that nothing pulls another build; textpruner without its broken
# requirements (its setup.py asks for numpy<1.22 on Python 3.10+); its real needs come from
# pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps textpruner==1.1.post2
	touch $(STAMP)

# the slow tests also exercise the TensorFlow checkpoint conversion (an optional extra)
$(VENV)/.installed-tf: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,tf]'
	touch $@

# the slow suite adds ExecuTorch (an optional extra: a minute to install, a minute or two to
# lower each tiny program), so that `make test` stays within ten minutes with its install
$(VENV)/.installed-et: $(VENV)/.installed-tf pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,tf,executorch]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/lert-compress run $(recipe) --out $(OUT) --nproc $(NPROC) $(ARGS)

# everything not marked slow: the unit tests, the fault suite, tiny end-to-end runs
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# real-shape smoke runs (LERT-large/base/small-shaped checkpoints), plain-client checks, the
# TensorFlow conversion and ExecuTorch
test-slow: $(VENV)/.installed-et
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check compress eval tests benchmarks
	$(BIN)/ruff format --check compress eval tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format compress eval tests benchmarks
	$(BIN)/ruff check --fix compress eval tests benchmarks

report: $(STAMP)
	$(BIN)/lert-compress report $(OUT)/$(recipe)

gpu-check: $(STAMP)
	bash scripts/gpu_check.sh

clean:
	rm -rf $(OUT)/*/ .pytest_cache
