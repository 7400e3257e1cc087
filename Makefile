# nfbench: `make repro` runs the embedded suite end to end; `make test` runs the tests.
# Both create .venv and install the pinned environment (requirements.lock) on first use.
# `make check` compares the results with the committed reference (reproduce: to float rounding);
# `make replicate` retrains every model with other seeds and judges the conclusions' agreement.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# seeds of a replication: as many as the suite's models use (14), none of theirs (0-13)
SEEDS  ?= 100 101 102 103 104 105 106 107 108 109 110 111 112 113

.PHONY: install lint test test-fast rehearsal repro bench bench-gpu check replicate clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

lint: install
	$(BIN)/ruff check benchmark tests

test: install
	$(BIN)/python -m pytest -q -m "not rehearsal"

# both paper-scale suites end to end on format-exact stand-ins (~12 min on 2 cores; CI runs it)
rehearsal: install
	$(BIN)/python -m pytest -q -m rehearsal

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not rehearsal"

repro: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

check: install
	$(BIN)/nfbench check

replicate: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/nfbench replicate --seeds $(SEEDS)

bench: install
	$(BIN)/nfbench bench frames

# the engine's GPU goals (README, "On a GPU") in one prepared run; where torch is installed but
# not this venv (a lent GPU machine): make bench-gpu NFBENCH="python3 -m benchmark.cli"
NFBENCH   ?= $(BIN)/nfbench
GPU_BENCH := $(NFBENCH) bench frames --device cuda --no-memory
bench-gpu: $(if $(filter $(BIN)/nfbench,$(NFBENCH)),install)   # the venv unless NFBENCH names another
	$(GPU_BENCH) --layers auto all --models smallcnn@28 resnet18@64 --repeats 10 --methods plain plain-cl grams engine engine-public fd
	$(GPU_BENCH) --layers auto --models resnet50@224 --points 64 --vectors 64 --chunk-size 4096 --repeats 5 \
	  --methods plain plain-cl grams engine engine-public
	$(GPU_BENCH) --layers auto --models resnet50@224 --points 1000 --vectors 64 --chunk-size 4096 --repeats 1 --methods plain engine

clean:
	rm -rf $(VENV)
