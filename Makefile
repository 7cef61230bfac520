# make test: formatting, lints, unit and integration tests, template checks and the local AWS
# end-to-end test. Installs its own tools.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
AARCH64 := aarch64-unknown-linux-gnu
FUNCTIONS := TokenFunction JwksFunction RotateKeysFunction SecretScanningFunction AuthorizerFunction
# SAM must not phone home (telemetry, version check); validate needs a region, no credentials.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-eu-west-1}

.PHONY: test fmt-check clippy unit-tests bench-smoke venv template-check aarch64-target local-aws local-aws-e2e

test: prereqs venv fmt-check clippy unit-tests template-check local-aws-e2e

# What a fresh machine must have before anything is built or installed (README "Prerequisites"):
# one line names everything missing. Runs first for test, local-aws and local-aws-e2e. Python
# 3.10 to 3.14: what moto, SAM and cfn-lint (infra/requirements*.txt) support.
RUST_VERSION := $(shell sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
.PHONY: prereqs
prereqs:
	@missing=; need() { missing="$${missing:+$$missing, }$$1"; }; \
	rust=$$(rustc --version 2>/dev/null | cut -d' ' -f2); \
	if [[ -z $$rust ]] || ! $(CARGO) --version > /dev/null 2>&1; then need "Rust >= $(RUST_VERSION) (cargo, rustc)"; \
	elif [[ $$(printf '%s\n' "$(RUST_VERSION)" "$$rust" | sort -V | head -n 1) != "$(RUST_VERSION)" ]]; then \
	  need "Rust >= $(RUST_VERSION) (found $$rust)"; \
	else \
	  $(CARGO) fmt --version > /dev/null 2>&1 || need "rustfmt (rustup component add rustfmt)"; \
	  $(CARGO) clippy --version > /dev/null 2>&1 || need "clippy (rustup component add clippy)"; \
	fi; \
	command -v cc > /dev/null || need "a C compiler as cc (gcc or clang)"; \
	$(PYTHON) -c 'import sys, venv, ensurepip; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 15))' \
	  > /dev/null 2>&1 || need "Python 3.10 to 3.14 with the venv module ($(PYTHON) -m venv)"; \
	command -v curl > /dev/null || need "curl"; \
	[[ -z $$missing ]] || { echo "make: missing prerequisites: $$missing (see README \"Prerequisites\")" >&2; exit 1; }

# The moto server the AWS store tests start; rebuilt only when infra/requirements.txt changes.
venv: $(VENV)/.installed

$(VENV)/.installed: infra/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r infra/requirements.txt
	touch $@

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

# One test at a time: the concurrency tests send 64 requests at once through moto, which answers
# one call at a time, within the token flow's 3 s decision deadline; beside other tests on a
# 2-core machine (fuzzing, servers) they would be answered 503 instead of measured.
unit-tests: $(VENV)/.authlib-installed
	$(CARGO) test --workspace --all-features -- --test-threads=1
	$(MAKE) bench-smoke

# Every benchmark run once, unoptimised, as a test: a bench that stopped working (an
# assertion its fixture no longer passes, a panic half-way) fails here rather than when
# someone next measures. Its figures mean nothing; `cargo bench` measures.
bench-smoke:
	$(CARGO) test --workspace --all-features --bench '*'

# Authlib for the private_key_jwt end-to-end test; again when its pins change.
.PHONY: venv-authlib
venv-authlib: $(VENV)/.authlib-installed

$(VENV)/.authlib-installed: $(VENV)/.installed infra/requirements-authlib.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q -r infra/requirements-authlib.txt
	touch $@

# SAM, cfn-lint, cargo-lambda and zig, pinned, in their own venv (SAM pins boto3 differently
# from moto); installed once, again when the pins change.
.venv-sam/.installed: infra/requirements-sam.txt infra/requirements-lambda.txt
	test -x .venv-sam/bin/python || $(PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install --disable-pip-version-check -q -r infra/requirements-sam.txt
	touch $@

aarch64-target:
	@rustup target list --installed | grep -qx '$(AARCH64)' || rustup target add $(AARCH64) || { \
	  echo "error: the $(AARCH64) Rust target is missing and could not be downloaded;" >&2; \
	  echo "       sam build cannot cross-build the arm64 functions. Install it with" >&2; \
	  echo "       'rustup target add $(AARCH64)' on a machine that reaches the Rust dist server." >&2; \
	  exit 1; }

# cfn-guard, pinned, built once into .tools/ (about 150 s on 2 cores); again when the pin changes.
CFN_GUARD_VERSION := 3.2.1
CFN_GUARD := .tools/bin/cfn-guard
.PHONY: cfn-guard
cfn-guard:
	@[[ "$$($(CFN_GUARD) --version 2>/dev/null)" == "cfn-guard $(CFN_GUARD_VERSION)" ]] \
	  || $(CARGO) install --root .tools --locked --version $(CFN_GUARD_VERSION) cfn-guard

# inferno (flame graphs from perf's stacks, for `PERF_OUT=dir bench/load.sh`), pinned, built once
# into .tools/ (about a minute on 2 cores); again when the pin changes. Not part of make test.
INFERNO_VERSION := 0.12.8
.PHONY: inferno
inferno:
	@[[ -x .tools/bin/inferno-flamegraph ]] \
	  && grep -q '^"inferno $(INFERNO_VERSION) ' .tools/.crates.toml 2>/dev/null \
	  || $(CARGO) install --root .tools --locked --version $(INFERNO_VERSION) inferno

# checkov, pinned, in its own venv (its pins of boto3 and friends differ from SAM's and moto's).
.venv-checkov/.installed: infra/requirements-checkov.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --disable-pip-version-check -q -r infra/requirements-checkov.txt
	touch $@

# Lints template.yaml and its nested monitoring.yaml and example-api.yaml, and template.yaml
# again with a custom domain and with the example API on; runs the policy rules
# (infra/policy/*.guard: IAM, the key secret, logs, tables, access log, aliases, alarms, the
# example's authorizers; docs/aws.md "Template checks") after checking that each rule passes
# and fails its own fixtures, over what SAM generates from each variant
# (infra/sam_transform.py) and over the nested templates; runs checkov's CloudFormation checks
# (suppressions and their reasons in .checkov.yaml and the resources' Metadata); and builds
# the arm64 bootstrap of each function as a deployment would (sam build -> cargo lambda -> zig;
# the venv's python3 comes first on PATH so that cargo lambda finds zig). `make template-rules`
# is everything but the build, in about a minute. The variants are written beside a copy of
# the nested templates they name (Location: monitoring.yaml, example-api.yaml).
CHECK_DIR := .aws-sam/template-check
VARIANTS := template with-domain with-example
NESTED := monitoring.yaml example-api.yaml
.PHONY: template-rules
template-check: template-rules aarch64-target
	PATH="$(CURDIR)/.venv-sam/bin:$$PATH" $(SAM_ENV) .venv-sam/bin/sam build
	.venv-sam/bin/python infra/check_bootstrap.py $(foreach f,$(FUNCTIONS),.aws-sam/build/$(f)/bootstrap)

template-rules: .venv-sam/.installed .venv-checkov/.installed cfn-guard
	rm -rf $(CHECK_DIR) && mkdir -p $(CHECK_DIR)
	cp template.yaml $(NESTED) $(CHECK_DIR)/
	.venv-sam/bin/python infra/with_domain.py template.yaml $(CHECK_DIR)/with-domain.yaml
	.venv-sam/bin/python infra/with_example.py template.yaml $(CHECK_DIR)/with-example.yaml
	.venv-sam/bin/cfn-lint $(NESTED) $(foreach v,$(VARIANTS),$(CHECK_DIR)/$(v).yaml)
	for t in $(NESTED) $(foreach v,$(VARIANTS),$(CHECK_DIR)/$(v).yaml); do \
	  $(SAM_ENV) .venv-sam/bin/sam validate --lint -t $$t || exit 1; \
	done
	.venv-sam/bin/python infra/policy/check_fixtures.py infra/policy
	@$(CFN_GUARD) test --dir infra/policy > $(CHECK_DIR)/guard-test.log \
	  && echo "cfn-guard test: every rule in infra/policy meets its fixtures" \
	  || { cat $(CHECK_DIR)/guard-test.log; exit 1; }
	for v in $(VARIANTS); do \
	  $(SAM_ENV) .venv-sam/bin/python infra/sam_transform.py $(CHECK_DIR)/$$v.yaml $(CHECK_DIR)/$$v.json || exit 1; \
	done
	$(CFN_GUARD) validate --show-summary fail -r infra/policy/iam.guard -r infra/policy/operations.guard \
	  -r infra/policy/keys.guard \
	  $(foreach v,$(VARIANTS),-d $(CHECK_DIR)/$(v).json)
	$(CFN_GUARD) validate --show-summary fail -r infra/policy/monitoring.guard -d monitoring.yaml
	$(CFN_GUARD) validate --show-summary fail -r infra/policy/example.guard -d example-api.yaml
	.venv-checkov/bin/checkov --config-file .checkov.yaml $(foreach t,$(NESTED),-f $(t)) \
	  $(foreach v,$(VARIANTS),-f $(CHECK_DIR)/$(v).json)

# cargo-lambda and PyJWT on top of moto, for the local AWS path.
$(VENV)/.local-installed: $(VENV)/.installed infra/requirements-local.txt infra/requirements-lambda.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q -r infra/requirements-local.txt
	touch $@

# The AWS shape on this machine (moto + cargo lambda watch) under one base URL; Ctrl-C stops it.
local-aws: prereqs $(VENV)/.local-installed
	infra/local-aws.sh

# Starts local-aws, gets and verifies a token from the real Lambda binaries, checks the audit
# table, sends the same raw malformed requests to it and to an embedded token-server (same
# status and error code required), stops both and checks that nothing is left running.
local-aws-e2e: prereqs $(VENV)/.local-installed
	infra/local-aws-e2e.sh
