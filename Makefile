# Two commands do everything on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-smoke lint docs system venv clean-venv

demo: system $(STAMP)  ## the example device suite against a loopback device
	$(BIN)/python scripts/demo.py

test: system $(STAMP)  ## run the test suite against a loopback sshd "device"
	$(BIN)/pytest -n 2 -ra

bench: system $(STAMP)  ## our mount vs plain sshfs, side by side (prints a table)
	$(BIN)/python bench/bench.py

bench-smoke: system $(STAMP)  ## the same, tiny: CI keeps the benchmark working
	$(BIN)/python bench/bench.py --smoke

lint: $(STAMP)  ## ruff (rules and formatting) and mypy
	$(BIN)/ruff check src tests scripts examples bench
	$(BIN)/ruff format --check src tests scripts examples bench
	$(BIN)/mypy

docs: $(STAMP)  ## rewrite the options tables in README.md and docs/ from the options the plugin registers
	$(BIN)/python -m pytest_jumpstarter_mount.config.optionsdoc

system:
	@scripts/install-system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
