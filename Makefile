# nfbench: `make repro` runs the embedded suite end to end; `make test` runs the tests.
# Both create .venv and install the pinned environment (requirements.lock) on first use.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test test-fast repro bench check clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

repro: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

check: install
	$(BIN)/nfbench check

bench: install
	$(BIN)/nfbench bench frames

clean:
	rm -rf $(VENV)
