# Two commands for users: `make run` and `make test`. Both set up .venv first if needed.
VENV := .venv
BABI_DIR ?= ../shared/data/babi
PIPELINE_ROOT ?= build/pipeline_root

.PHONY: setup run test lint clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/memn2n pipeline run --babi-dir $(BABI_DIR) --pipeline-root $(PIPELINE_ROOT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/python -m pytest tests

clean:
	rm -rf $(VENV) .tools build
