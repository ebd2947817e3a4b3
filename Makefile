# maintenance-billing-broker — the two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test test-slow lint install dev schemas bench bench-pricing bench-memory bench-delivery bench-dlq bench-ingest bench-latency bench-pipeline bench-recovery bench-startup lock clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found; set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e '.[sandbox]'   # the demo runs the emulators
	@touch $@

$(STAMP): $(PY) pyproject.toml constraints.txt tests/plugins/example_connector/pyproject.toml
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -e tests/plugins/example_connector   # the example connector plugin (tests/test_plugin_model.py)
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed   ## runtime + sandbox (emulators) install into .venv
dev: $(STAMP)                 ## runtime + dev extras

demo: $(VENV)/.installed      ## run the whole pipeline on the bundled examples
	$(PY) -m broker demo

test: $(STAMP)                ## the whole default suite (slow tests excluded)
	$(PY) -m pytest

lint: $(STAMP)                ## the quality gates CI runs before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-slow: $(STAMP)           ## only the long chaos/soak tests
	$(PY) -m pytest -m slow

schemas: $(VENV)/.installed   ## regenerate schemas/*.schema.json
	$(PY) -m broker schemas export

bench: $(STAMP)               ## every benchmark below in turn (P1-P7 of issue 15, about 25 min), each printing its figures and ratios
	$(MAKE) --no-print-directory bench-pricing bench-pipeline bench-latency bench-delivery bench-dlq bench-memory bench-startup bench-recovery bench-ingest

bench-pricing: $(VENV)/.installed  ## P2 pricing events/s on one core next to validation alone (prints the ratio)
	$(PY) tools/bench_pricing.py

bench-delivery: $(STAMP)  ## P3 a throttled Xero tenant's backlog in batches (ratio of the ceiling), P4 a healthy tenant's p99 during another's outage (prints ratios)
	$(PY) tools/bench_delivery.py

bench-dlq: $(STAMP)    ## dead-letter path: does a burst of bad records hold good ones back? then the replay rate (prints ratios)
	$(PY) tools/bench_dlq.py

bench-ingest: $(STAMP)    ## HTTP intake: signed events per second and latency, next to a bare producer (prints the ratio)
	$(PY) tools/bench_ingest.py

bench-latency: $(STAMP)   ## event -> delivered invoice p50/p99 at 20, 100 and 300 events/s, next to Faust's 1.5 s fetch wait (prints ratios)
	$(PY) tools/bench_latency.py

bench-pipeline: $(STAMP)  ## P1 enrich + price events/s next to a bare two-agent Faust pipeline on the same broker and settings (prints the ratio)
	$(PY) tools/bench_pipeline.py

bench-memory: $(STAMP)    ## P6 bytes per delivered invoice in the ledger, first delivery and RSS with 1/100/1,000 tenants, restart with a 10k ledger (prints ratios to targets)
	$(PY) tools/bench_memory.py

bench-recovery: $(STAMP)  ## worker restart with a 100k-entry ledger: memory vs RocksDB store (prints both and the ratio)
	$(PY) tools/bench_recovery.py

bench-startup: $(VENV)/.installed  ## config parse (C vs pure YAML loader), connector lookup, redact, dead-letter log line (prints ratios)
	$(PY) tools/bench_startup.py --memory

lock: $(STAMP)                ## rewrite constraints.txt from the test environment (after changing pyproject.toml)
	{ head -3 constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -i -e '^maintenance-billing-broker' -e '^broker-connector-example' -e '^py-spy'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .broker-data *.egg-info
