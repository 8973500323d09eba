# Two commands do everything on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint system venv clean-venv

test: system $(STAMP)  ## run the test suite against a loopback sshd "device"
	$(BIN)/pytest -n 2 -ra

lint: $(STAMP)
	$(BIN)/ruff check src tests

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
