# Two commands: `make setup` (once) and `make test`. See README.md.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# Python 3.11 from PATH, pyenv, or a clear error.
PYTHON311 ?= $(shell command -v python3.11 2>/dev/null || (command -v pyenv >/dev/null && pyenv prefix 3.11 2>/dev/null | sed 's|$$|/bin/python3.11|'))
STAMP := $(VENV)/.installed

.PHONY: setup test unit notebooks demo bench bench-cnn clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@if [ -z "$(PYTHON311)" ] || ! "$(PYTHON311)" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then \
	  echo "error: Python 3.11 is needed (Theano 1.0.5 + numpy 1.23.5). Install it (pyenv install 3.11, or your package manager) or run: make setup PYTHON311=/path/to/python3.11" >&2; exit 2; fi
	@[ -x $(PY) ] || "$(PYTHON311)" -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@
	@echo "setup done: $(VENV) ready"

test: setup
	@start=$$(date +%s); \
	$(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider; rc=$$?; \
	echo "suite wall time: $$(( $$(date +%s) - start )) s"; exit $$rc

unit: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) -m captioning.demo

clean:
	rm -rf $(VENV) .theano_cache runs build
