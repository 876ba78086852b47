# The same targets locally, in CI and in the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench eval-live clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,synapse,databricks,adx,cosmos,search]"
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

# Live evaluation with a real model (never part of `make test`): start one first, e.g.
# ../shared/local-model/serve, and export the OPENAI_BASE_URL / OPENAI_API_KEY / LOOM_MODEL it prints.
SPIDER ?= ../shared/data/nl2sql_spider_dev
BFCL ?= ../shared/data/agent_bfcl
BIRD ?= ../shared/data/nl2sql_bird_minidev
NL2KQL ?= ../shared/data/nl2kql_microsoft
EVAL_OUT ?= runs
eval-live: $(STAMP)
	@test -n "$$OPENAI_BASE_URL$$AZURE_OPENAI_ENDPOINT" || { echo "start a model and export OPENAI_BASE_URL first (see ../shared/local-model/README.md)"; exit 2; }
	mkdir -p $(EVAL_OUT)
	$(BIN)/loom eval load spider --data $(SPIDER) --sample 200 --seed 7 --out $(EVAL_OUT)/spider-dev-200.yaml
	$(BIN)/loom eval load bird --data $(BIRD) --out $(EVAL_OUT)/bird-minidev-140.yaml
	$(BIN)/loom eval run $(EVAL_OUT)/spider-dev-200.yaml --live --direct --baseline plain --out $(EVAL_OUT)
	$(BIN)/loom eval run $(EVAL_OUT)/bird-minidev-140.yaml --live --direct --baseline plain --out $(EVAL_OUT)
	$(BIN)/loom eval load nl2kql --data $(NL2KQL) --sample 40 --seed 7 --out $(EVAL_OUT)/nl2kql-40.yaml
	$(BIN)/loom eval run $(EVAL_OUT)/nl2kql-40.yaml --live --direct --baseline plain --out $(EVAL_OUT)
	$(BIN)/loom eval run evals/suites/smoke.yaml --live --out $(EVAL_OUT)
	$(BIN)/loom eval load bfcl --data $(BFCL) --sample 120 --seed 7 --out $(EVAL_OUT)/bfcl-120.yaml
	$(BIN)/loom eval run $(EVAL_OUT)/bfcl-120.yaml --live --out $(EVAL_OUT)

clean:
	rm -rf $(VENV) .loom .pytest_cache .mypy_cache .ruff_cache
