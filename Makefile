# Two set-up commands on a fresh Debian 12 machine, as root: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Packages the app needs at run time (pyscard builds from source) ...
RUN_DEBS := python3-venv python3-dev build-essential swig libpcsclite-dev pcscd
# ... and what the tests need besides (PgBouncer in front of PostgreSQL, pcscd's
# virtual reader driver, SoftHSM2 as the PKCS#11 module, OpenSSH server and client for
# the SSH sessions, sudo for the multi-user SSH server's service account, systemd for
# systemd-analyze, cage, foot, Xwayland and the Noto CJK fonts for the kiosk seat, OpenSC
# and yubico-piv-tool as card clients nobody here wrote;
# build-essential above also compiles test-services' loopback shim).
TEST_DEBS := postgresql pgbouncer sudo systemd cage foot xwayland fonts-noto-cjk tmux vsmartcard-vpcd softhsm2 openssh-server openssh-client opensc opensc-pkcs11 yubico-piv-tool
DEB_STAMP := .make/debs
VENV_STAMP := $(VENV)/.installed

.PHONY: run test lint bench stress clean system-packages test-system-packages pictures docs

# The stamps depend on the Makefile, so a package added to a list is installed on
# machines that already ran `make` (ensure-debs only asks apt for what is missing).
$(DEB_STAMP)-run: Makefile
	@mkdir -p .make
	scripts/ensure-debs.sh $(RUN_DEBS)
	@touch $@

$(DEB_STAMP)-test: $(DEB_STAMP)-run Makefile
	scripts/ensure-debs.sh $(TEST_DEBS)
	@touch $@

$(VENV_STAMP): pyproject.toml | $(DEB_STAMP)-run
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[kiosk,dev]'
	@touch $@

# Byte-compiled once here, so that a kiosk started with PYTHONDONTWRITEBYTECODE (as
# some images set it) does not compile the app's modules again at every start.
COMPILE := $(BIN)/python -m compileall -q smis_tui models card bench

# The demo lives in a directory of its own, on its own SQLite database and key, whatever
# database or key the environment names: demo accounts never reach a real database.
DEMO_DIR := $(CURDIR)/.demo
DEMO_ENV := env -u DATABASE_URL -u SMIS_CONFIG -u SMIS_KEY_FILE -u SMIS_CA_DIR \
	-u SMIS_CRL_DIR SMIS_DATA_DIR=$(DEMO_DIR)

run: $(VENV_STAMP)
	$(COMPILE)
	$(DEMO_ENV) $(BIN)/smis-tui db init --demo
	$(DEMO_ENV) $(BIN)/smis-tui demo init
	$(DEMO_ENV) $(BIN)/smis-tui run --kiosk --demo

lint: $(VENV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(VENV_STAMP) $(DEB_STAMP)-test lint
	SMIS_REQUIRE_POSTGRES=1 scripts/test-services.sh $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The pictures of every screen in docs/screens/ (the README shows some), drawn anew;
# `make test` fails when a screen no longer looks as its picture.
pictures: $(VENV_STAMP)
	SMIS_UPDATE_PICTURES=1 $(BIN)/pytest -q -p no:cacheprovider tests/tui/test_every_screen.py -k 80_by_24

# The pictures of the user manuals (docs/manual.zh-TW.md, docs/manual.en.md) in
# docs/manual/, drawn by the app on the demo at a stopped clock: the same screens give
# the same files, and tests/tui/test_manual.py fails when one no longer matches.
docs: $(VENV_STAMP)
	$(BIN)/python -m tests.manual_pictures

bench: $(VENV_STAMP) $(DEB_STAMP)-test
	$(COMPILE)
	scripts/test-services.sh bash -c '\
		DATABASE_URL_BENCH=$$SMIS_TEST_POSTGRES_URL $(BIN)/python -m bench.bench_units && echo && \
		DATABASE_URL_BENCH=$$SMIS_TEST_POSTGRES_URL $(BIN)/python -m bench.bench_import && echo && \
		$(BIN)/python -m bench.bench_login && echo && \
		$(BIN)/python -m bench.bench_tui && echo && \
		$(BIN)/python -m bench.bench_ssh && echo && \
		$(BIN)/python -m bench.load --backend postgresql,sqlite --sessions 8,32 --sqlite-sessions 8 \
			--seconds 15 --connect-url $$SMIS_TEST_PGBOUNCER_URL --via-sessions 32'

# The full load (bench/load.py): 8, 32 and 64 sessions, each its own process, on
# PostgreSQL directly, 64 through PgBouncer, and 8 and 16 on one SQLite file; every invariant
# checked after each run (exit 1 if not);
# then the abuse, security and fault suites with many more hypothesis examples, from a
# random seed that is printed first (HYPOTHESIS_SEED=N make stress repeats a run).
STRESS_SECONDS ?= 45
ifeq ($(origin HYPOTHESIS_SEED),undefined)
HYPOTHESIS_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
stress: $(VENV_STAMP) $(DEB_STAMP)-test
	$(COMPILE)
	@echo "make stress: hypothesis seed $(HYPOTHESIS_SEED)"
	scripts/test-services.sh bash -c '\
		$(BIN)/python -m bench.load --backend postgresql,sqlite --sessions 8,32,64 --sqlite-sessions 8,16 \
			--seconds $(STRESS_SECONDS) --connect-url $$SMIS_TEST_PGBOUNCER_URL --via-sessions 64 && echo && \
		HYPOTHESIS_PROFILE=stress SMIS_REQUIRE_POSTGRES=1 $(BIN)/pytest -q -p no:cacheprovider \
			--hypothesis-seed=$(HYPOTHESIS_SEED) \
			tests/unit/test_abuse_text.py tests/unit/test_abuse_card.py tests/unit/test_agent_protocol.py \
			tests/integration/test_abuse_cli.py tests/integration/test_security.py \
			tests/integration/test_faults.py tests/tui/test_abuse_tui.py tests/tui/test_faults_tui.py'

clean:
	rm -rf .make $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .demo
