# The README's two commands: `make demo` and `make test`. Everything a fresh machine needs is here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PEOPLE ?= 20000
DEMO_HOME ?= custodes-data

.PHONY: demo test lint format bench clean postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Tests that need PostgreSQL use the local server; start it where one is installed but stopped.
postgres:
	@pg_isready -q 2>/dev/null || { command -v pg_ctlcluster >/dev/null && \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start && \
	  sleep 2; } || echo "note: no PostgreSQL server could be started; PostgreSQL tests will fail"

demo: $(STAMP)
	DEMO_PEOPLE=$(DEMO_PEOPLE) CUSTODES_HOME=$(DEMO_HOME) $(BIN)/python -m custodes.demo

test: $(STAMP) postgres
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) custodes-data .pytest_cache
