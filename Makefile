# orderops: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
SCENARIO ?= state/sandbox-scenario.json
ORDERS ?= 300
SEED ?= 1

.PHONY: venv test demo sandbox lock clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) -m pytest tests

demo: venv
	$(PY) -m include.demo

# Serve the sandbox in the foreground on a generated scenario (Ctrl-C stops it).
sandbox: venv
	$(PY) -m include.sandbox generate --orders $(ORDERS) --seed $(SEED) --out $(SCENARIO)
	$(PY) -m include.sandbox serve --scenario $(SCENARIO)

# Re-resolve the pins from the top-level packages (needs network access to the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q "apache-airflow==3.3.2" apache-airflow-providers-http apache-airflow-providers-standard \
	  apache-airflow-providers-postgres apache-airflow-providers-openlineage pandas httpx great-expectations \
	  graphql-core jsonschema openapi-schema-validator psycopg2-binary pytest pytest-timeout hypothesis
	{ head -2 requirements.txt; .lock-venv/bin/pip freeze; } > requirements.lock && mv requirements.lock requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) state
