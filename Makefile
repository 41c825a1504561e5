# Two front doors: `make demo` (offline multi-agent run) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml toolsmith/__init__.py  # a new package needs a new editable install
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/coagent demo

lint: install
	$(BIN)/ruff check coagent_cli toolsmith tests benchmarks

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/coagent bench --core

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
