# gauntlet.cluster — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The topologies `make test` runs, in CI order: those whose molecule/<name>/topology.yml says `ci: make-test`
# (`python -m gauntlet.topologies list --make-test`; tests/unit/test_topologies.py holds this line equal to
# it). patroni and cache run in the CI matrix only: default runs every one of their checks.
SCENARIOS ?= etcd redis_cluster custom default citus runners
REPORT ?= report

.PHONY: setup demo test lint unit checks scenarios scenario-citus build clean clean-hosts staging-proof lock

setup:            ## install packages, containers.conf, venv, base image (idempotent)
	@scripts/setup-host.sh

# requirements.lock: every Python dependency (project, dev, build backend) pinned with the hashes of all its
# published files, resolved for Python 3.11 from the public index alone (this machine's pip config, with its
# local mirrors, is left out so the lock names no local path). Run it after changing pyproject.toml's pins;
# `make setup` then installs from it (scripts/install-venv.sh). Existing pins are kept unless pyproject moves them.
lock:             ## regenerate requirements.lock from pyproject.toml (needs the venv: make setup)
	@python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "make lock: the lock is for Python 3.11")'
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
	  CUSTOM_COMPILE_COMMAND="make lock" pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	  --extra dev --all-build-deps --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

demo: setup       ## bring up the default topology, run its checks, write the report (exit non-zero on a failed check)
	gauntlet run --topology default --report $(REPORT)

test: setup lint build checks  ## everything CI runs: lint and the build, then the checks in lanes

lint:
	@echo "==> ruff"; ruff check src tests servers plugins && ruff format --check src tests servers plugins
	@echo "==> mypy (strict, src/gauntlet)"; mypy
	@echo "==> ansible-lint"; ansible-lint --offline -q roles playbooks molecule
	@echo "==> antsibull-changelog lint (changelogs/fragments)"; antsibull-changelog lint

unit:
	@echo "==> unit tests"; pytest tests/unit -q -p no:cacheprovider

build:
	@echo "==> ansible-galaxy collection build"; ansible-galaxy collection build --force --output-path .cache/dist . >/dev/null && ls .cache/dist

# The unit tests, the topologies and the SSH-staging proof in lanes side by side (scripts/scenarios.sh):
# default (LONG_SCENARIO) from the start, alone until it reaches its checks; then the other lane takes
# CHECKS_QUEUE in order, and default's lane what is left once default ends, one topology converging at a
# time (scripts/converge-slot.sh: a converge keeps both cores busy, checks mostly wait). The order balances
# the two lanes by the CI's figures (unit 260 s, etcd 419, custom 913, runners 711 in the one lane;
# redis_cluster 208 and the staging proof 254 after default's 2218); tests/unit/test_topologies.py holds it
# to SCENARIOS. GAUNTLET_LANES=3 runs three lanes: measured here no faster (default's checks slowed by
# 350 s) and a Raft KV check failed on a leader change under the load.
LONG_SCENARIO ?= default
CHECKS_QUEUE ?= unit etcd custom runners redis_cluster citus staging-proof
checks:
	@echo "==> unit tests, scenarios and the staging proof ($(LONG_SCENARIO) first; $${GAUNTLET_LANES:-2} lanes)"
	@REPORT=$(REPORT) scripts/scenarios.sh "$(filter $(LONG_SCENARIO),$(SCENARIOS))" $(CHECKS_QUEUE)

# The topologies alone, in the same lanes (no unit tests, no staging proof).
scenarios:
	@echo "==> scenarios $(SCENARIOS) ($(LONG_SCENARIO) first; $${GAUNTLET_LANES:-2} lanes)"
	@REPORT=$(REPORT) scripts/scenarios.sh "$(filter $(LONG_SCENARIO),$(SCENARIOS))" $(filter-out $(LONG_SCENARIO),$(SCENARIOS))

# Citus needs an install source the caller names (docs/citus.md); without one it prints one SKIP line.
scenario-citus:
	@echo "==> molecule test -s citus"; GAUNTLET_REPORT_DIR=$(CURDIR)/$(REPORT)/citus scripts/scenario-citus.sh

# One topology, phase by phase with a BENCH line each (scripts/scenario.sh); the checks stream as they run.
scenario-%:
	@echo "==> scenario $*"; GAUNTLET_REPORT_DIR=$(CURDIR)/$(REPORT)/$* scripts/scenario.sh $*

# The planted-defect proof (gauntlet prove) of a topology kept up (scripts/scenario.sh NAME --keep): each
# defect its topology.yml's `proof` names is planted, caught by its check, undone. `make test` runs it in
# every scenario whose description names one (scripts/scenario.sh's prove phase).
prove-%:
	@echo "==> prove $*"; GAUNTLET_REPORT_DIR=$(CURDIR)/$(REPORT)/$* molecule side-effect -s $*

# SSH-staging proof: bare containers reached over SSH as staging hosts, the README's staging commands, the
# container run's checks (scripts/staging-proof.sh). STAGING_TOPOLOGY=etcd (default) or patroni, custom...
staging-proof:
	@REPORT=$(REPORT) scripts/staging-proof.sh

clean:
	rm -rf $(REPORT) .cache/dist

# The containers and networks an interrupted run left (label gauntlet_scenario), and Molecule's state of
# the scenarios cleaned: every one, or SCENARIO=name's only (gauntlet clean).
clean-hosts:
	gauntlet clean $(if $(SCENARIO),--scenario $(SCENARIO))
