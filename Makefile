# The two commands of the README. Both set everything up first (idempotently).
.PHONY: setup demo test lint bench

PY := .venv/bin/python
DATA ?= ../shared/data/panos/geovisio-gopromax-2048
PROJECT ?= demo-project

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m splatstudio run $(DATA) -p $(PROJECT) --preset test --device auto

test: setup
	bash scripts/test.sh

lint: setup
	$(PY) -m ruff check splatstudio tests benchmarks
	.venv/bin/lint-imports

bench: setup
	$(PY) benchmarks/bench_reproject.py
	$(PY) benchmarks/bench_ingest.py
