# Two commands: `make run` (serve the KMC on SQLite) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STS_EA07_TABLES ?= $(abspath $(wildcard ../shared/sts/ea07_tables.json))

.PHONY: run test lint bench demo clean hsm-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/kmc init
	$(BIN)/kmc serve --host 127.0.0.1 --port 5000

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sts_token key_load_protocol
	$(BIN)/lint-imports --no-cache

# SoftHSM2 and OpenSC for the PKCS#11 key store tests, installed only when missing (as root).
hsm-tools:
	@if [ ! -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v pkcs11-tool >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 opensc >/dev/null; \
		else echo "make: SoftHSM2 tests skip: apt-get install -y softhsm2 opensc" >&2; fi; fi

test: lint hsm-tools
	STS_EA07_TABLES=$(STS_EA07_TABLES) $(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

demo: $(VENV)/.installed
	STS_EA07_TABLES=$(STS_EA07_TABLES) $(BIN)/python -m sm_emulator.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
