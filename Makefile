# certloop: two set-up commands on a fresh machine, `make demo` and `make test`.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help bootstrap test lint types unit generate demo bench clean

help:
	@echo "make demo   - bootstrap, then run the closed loop on loopback with demo certificates"
	@echo "make test   - bootstrap, then lint, type-check and run the test suite"
	@echo "make bench  - bootstrap, then run the side-by-side benchmarks"
	@echo "make generate - re-render alerting/generated, dashboards/generated and docs/reference"

bootstrap:
	@scripts/bootstrap.sh

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

types: bootstrap
	$(VENV)/bin/mypy

unit: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint types unit

generate: bootstrap
	$(PY) -m certloop.alerting.build
	$(PY) -m certloop.dashboards.build
	$(PY) -m docs.gen_reference

demo: bootstrap
	$(PY) -m stack.demo

bench: bootstrap
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo .stack
