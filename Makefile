# make test: formatting, lints, unit and integration tests. Installs its own tools.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv

.PHONY: test fmt-check clippy unit-tests venv

test: venv fmt-check clippy unit-tests

# The moto server the AWS store tests start; rebuilt only when infra/requirements.txt changes.
venv: $(VENV)/.installed

$(VENV)/.installed: infra/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r infra/requirements.txt
	touch $@

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-tests:
	$(CARGO) test --workspace
