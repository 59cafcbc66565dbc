# The README's two commands: `make demo` and `make test`. Everything a fresh machine needs is here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make demo` installs custodes alone; `make test` (and lint, format, bench) add the `test`
# extra. Each stamp is remade when pyproject.toml changes; the test stamp also after the base one,
# so `make test` after `make demo` installs what the demo left out.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test
DEMO_PEOPLE ?= 20000
DEMO_HOME ?= custodes-data

ASSETS := src/custodes/web/static/vendor/.copied
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test typecheck lint format bench clean postgres assets browser softhsm

$(BASE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE_STAMP)

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

# The console's front-end assets (USWDS, htmx, and Swagger UI for /v1/docs) come from the npm
# registry at the versions in package-lock.json and are copied into the package: served by
# custodes itself, nothing fetched at run time. axe-core (tests only) stays in node_modules.
# swagger-ui-dist depends on @scarf/scarf, an install-time analytics ping: turned off here and in
# package.json (scarfSettings).
$(ASSETS): package.json package-lock.json
	SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error
	rm -rf src/custodes/web/static/vendor && mkdir -p src/custodes/web/static/vendor/uswds
	cp -r node_modules/@uswds/uswds/dist/css node_modules/@uswds/uswds/dist/js \
	  node_modules/@uswds/uswds/dist/fonts node_modules/@uswds/uswds/dist/img \
	  src/custodes/web/static/vendor/uswds/
	cp node_modules/@uswds/uswds/LICENSE.md src/custodes/web/static/vendor/uswds/
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/htmx.org/LICENSE \
	  src/custodes/web/static/vendor/
	mkdir -p src/custodes/web/static/vendor/swagger-ui
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
	  node_modules/swagger-ui-dist/LICENSE node_modules/swagger-ui-dist/NOTICE \
	  src/custodes/web/static/vendor/swagger-ui/
	node -e 'const l=require("./package-lock.json").packages; for (const p of ["@uswds/uswds","htmx.org","swagger-ui-dist","axe-core"]) console.log(p, l["node_modules/"+p].version)' \
	  > src/custodes/web/static/vendor/VERSIONS
	touch $(ASSETS)

assets: $(ASSETS)

# The browser tests drive Debian's chromium (Playwright cannot download its own browsers here).
browser:
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y chromium || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# The HSM test signs the ledger inside a PKCS#11 token: Debian's SoftHSM2 stands in for an HSM.
softhsm:
	@test -e /usr/lib/softhsm/libsofthsm2.so || $(SUDO) apt-get install -y softhsm2 || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y softhsm2; }

# Tests that need PostgreSQL use the local server; start it where one is installed but stopped.
postgres:
	@pg_isready -q 2>/dev/null || { command -v pg_ctlcluster >/dev/null && \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start && \
	  sleep 2; } || echo "note: no PostgreSQL server could be started; PostgreSQL tests will fail"

demo: $(BASE_STAMP) $(ASSETS)
	DEMO_PEOPLE=$(DEMO_PEOPLE) CUSTODES_HOME=$(DEMO_HOME) $(BIN)/python -m custodes.demo

# The type check (mypy, strict on src/custodes, configured in pyproject.toml): `make test` runs it
# first, so CI (.ci/run) fails on a type error before the suite starts, and `make lint` runs it.
typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The suite in TEST_WORKERS processes (pytest-xdist), each taking whole test files: a file's
# module fixtures (a Spark session, a console in a browser) are built once, and its tests keep
# their order; the slowest 20 tests are listed at the end. TEST_WORKERS=0 runs it in this
# process alone.
TEST_WORKERS ?= 2
test: $(TEST_STAMP) typecheck $(ASSETS) browser softhsm postgres
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=20

lint: $(TEST_STAMP) typecheck
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(TEST_STAMP)
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) custodes-data .pytest_cache .mypy_cache node_modules src/custodes/web/static/vendor \
	  test-artefacts
