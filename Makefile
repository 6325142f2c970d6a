# Two commands on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: FORCE install run test test-fast lint typecheck wheel-check dist contract bench constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# The editable install is strict: a tree of links under build/ that mypy and every process read
# as the package `vpp_sandbox` (setuptools maps the top-level folders into it, pyproject.toml).
# It lists the modules, so it is made again when a module is added or removed.
MODULES := $(sort $(wildcard src/vpp_sandbox/*.py mock_server/*.py contract_tests/*.py \
  fixtures/*.py openapi/*.py))
MODULE_LIST := $(VENV)/.modules

$(MODULE_LIST): FORCE | $(BIN)/python
	@echo "$(MODULES)" | cmp -s - $@ 2>/dev/null || echo "$(MODULES)" > $@

$(STAMP): $(BIN)/python pyproject.toml constraints.txt $(MODULE_LIST)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]" \
	  --config-settings editable_mode=strict
	touch $(STAMP)

FORCE:

install: $(STAMP)

# `make run` serves the demo world (loaded once, into an empty store); WORLD= for another,
# PORT=, HOST= and DB= for where it listens and keeps its data (else VPP_PORT, VPP_HOST, VPP_DB).
WORLD ?= demo
run: $(STAMP)
	$(BIN)/vpp-sandbox serve --world $(WORLD) $(if $(PORT),--port $(PORT)) \
	  $(if $(HOST),--host $(HOST)) $(if $(DB),--db $(DB))

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -n 2
	$(MAKE) --no-print-directory wheel-check

# The inner loop: lint and every test not marked slow (no served process, no long profile).
test-fast: lint
	$(BIN)/python -m pytest -n 2 -m "not slow"

# The distribution as a new user gets it: sdist and wheel built, the wheel installed into a fresh
# venv outside the clone, where serve + test --profile quick and the example project's tests run.
wheel-check: $(STAMP)
	$(BIN)/python .ci/wheel_check.py

# The sdist and the wheel in dist/, for `pip install dist/vpp_sandbox-…whl` anywhere.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .

# The contract suites against a running sandbox (`make run` in another terminal) or any URL.
BASE_URL ?= http://127.0.0.1:8080
ACCOUNT_ID ?= acc_661677911f2197045e6cf1b1
API_KEY ?= sk_test_vppsandbox4f3c9a2b7d1e8f60
SECOND_ACCOUNT_ID ?= $(ACCOUNT_ID)
SECOND_API_KEY ?= sk_live_vppsandbox4f3c9a2b7d1e8f60
PROFILE ?= default
contract: $(STAMP)
	$(BIN)/vpp-sandbox test --base-url $(BASE_URL) --account-id $(ACCOUNT_ID) \
	  --api-key $(API_KEY) --second-account-id $(SECOND_ACCOUNT_ID) \
	  --second-api-key $(SECOND_API_KEY) --profile $(PROFILE)

# BENCH_ARGS="--rounds 1 --seconds 2 --no-scaling" for a quick check of the script.
bench: $(STAMP)
	$(BIN)/python bench/asgi_cost.py
	$(BIN)/python bench/vs_prism.py $(BENCH_ARGS)

# The exact versions make and CI install, from a fresh venv with the ranges of pyproject.toml.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade "pip==25.3"
	.venv-constraints/bin/python -m pip install --quiet ".[dev]"
	( echo "# Exact versions for make and CI (pyproject.toml has the ranges). Regenerate with: make constraints"; \
	  .venv-constraints/bin/python -m pip freeze --exclude vpp-sandbox ) > constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .hypothesis .schemathesis schemathesis-report reports
