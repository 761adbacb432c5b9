# Two commands for users: `make run` and `make test`. Both set up .venv first if needed.
# BABI_DIR: a folder holding en/ and en-10k/; empty (the default) downloads the official
# archive once into ~/.cache/memn2n and checks every file (DATA_URL: from a mirror instead).
VENV := .venv
BABI_DIR ?=
DATA_URL ?=
PIPELINE_ROOT ?= build/pipeline_root

.PHONY: setup run test test-fast lint clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/memn2n pipeline run $(if $(BABI_DIR),--babi-dir $(BABI_DIR)) \
		$(if $(DATA_URL),--data-url $(DATA_URL)) --pipeline-root $(PIPELINE_ROOT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest tests --durations=15

test-fast: setup
	$(VENV)/bin/python -m pytest tests -m "not e2e"

clean:
	rm -rf $(VENV) .tools build
