# Two commands set everything up on a fresh Debian machine: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck unit install monitoring postgres chromium compose clean

# The sandbox extra brings the drill estate (moto, kmock, ...) for `make demo` and the tests;
# a production `pip install .` leaves it out.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

install: $(STAMP)

# Prometheus and Alertmanager come from Debian's packages; nothing is downloaded at run time.
monitoring:
	@if ! command -v prometheus >/dev/null || ! { command -v prometheus-alertmanager || test -x /usr/bin/prometheus-alertmanager; } >/dev/null; then \
		echo "installing prometheus and prometheus-alertmanager with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq prometheus prometheus-alertmanager; \
	fi

# The HTML report's test renders the page in Debian's headless Chromium and looks at it.
chromium:
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# The compose file's test runs `docker-compose config` (Debian's docker-compose; no engine needed).
compose:
	@if ! command -v docker-compose >/dev/null; then \
		echo "installing docker-compose with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker-compose; \
	fi

# The store's tests and a drill run against PostgreSQL too: Debian's server binaries
# (/usr/lib/postgresql/<version>/bin), started by a test fixture on a free port.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing postgresql with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi

demo: $(STAMP) monitoring
	$(BIN)/suture demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) monitoring postgres chromium compose lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not drill"

clean:
	rm -rf $(VENV) .suture build *.egg-info .pytest_cache .mypy_cache .ruff_cache
