# The same targets locally, in CI and in the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,synapse,databricks]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loom demo

serve: $(STAMP)
	$(BIN)/loom serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check loom tests benchmarks
	$(BIN)/ruff format --check loom tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.turn_overhead --turns 100 --rounds 5 --concurrency 50
	$(BIN)/python -m benchmarks.gold_fidelity
	$(BIN)/python -m benchmarks.schema_linking
	$(BIN)/python -m benchmarks.safety
	$(BIN)/python -m benchmarks.sql_overhead

clean:
	rm -rf $(VENV) .loom .pytest_cache .mypy_cache .ruff_cache
