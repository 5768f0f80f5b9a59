# fleetgate: `make up` runs the stack with a demo fleet; `make test` runs every check.
# Both do all set-up on a fresh machine: system packages, the virtual environment, the jars.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VEHICLES ?= 10
BROKER ?= amqtt
PYTEST_ARGS ?=

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up down status test lint typecheck unit integration e2e system venv clean help

help:
	@echo "make up       the whole stack on this machine with a demo fleet (Ctrl-C stops it)"
	@echo "make test     lint, type checks, unit, integration and end-to-end tests"
	@echo "make down     stop a stack started by 'make up' from another shell"

system:
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_pub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "please install:$$missing (Java 17+, Maven, Mosquitto, OpenSSL)" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is required (Python 3.11)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up: system venv
	$(BIN)/fleetgate up --broker $(BROKER) --vehicles $(VEHICLES)

down: venv
	$(BIN)/fleetgate down

status: venv
	$(BIN)/fleetgate status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: system venv
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

e2e: system venv
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

test: system venv lint typecheck
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
