# inflab — the two commands a newcomer needs are `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.test-installed

.PHONY: install lab test test-fast lint system-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

lab: install
	$(BIN)/inflab new --sandbox

# System packages the test suite needs (tmux for terminal checks, OpenSSH for the
# remote-host tests, Java 17 for TorchServe in the sandbox's serving exercise). Installed only when missing; needs root or sudo.
system-deps:
	@missing=""; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(TSTAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The whole suite in four test processes (each with its own INFLAB_HOME and sandbox daemon): many
# tests wait on a daemon, a job or a subprocess, so it takes four to keep two cores busy (two left a
# third of them idle, three a sixth). A test file stays in
# one process (its module fixtures are set up once); files go out in conftest's order, the whole-track
# ones first, so none of them starts last and runs on alone.
test: $(TSTAMP) system-deps lint
	$(BIN)/python -m pytest -q -n 4 --dist loadfile --no-loadscope-reorder --durations=15

# The unit tier only (no sandbox, no sshd, no model): seconds per file, for every edit.
test-fast: $(TSTAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m unit

# Lint: pyflakes and import order, the code's format, types of the typed modules. (The layer
# contracts are a test: tests/test_layers.py.)
lint: $(TSTAMP)
	$(BIN)/ruff check inflab tests bench
	$(BIN)/ruff format --check inflab tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .pytest_cache
