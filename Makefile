# Two commands: `make setup` (once) and `make test`. See README.md.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# Python 3.11 from PATH, pyenv, or a clear error.
PYTHON311 ?= $(shell command -v python3.11 2>/dev/null || (command -v pyenv >/dev/null && pyenv prefix 3.11 2>/dev/null | sed 's|$$|/bin/python3.11|'))
STAMP := $(VENV)/.installed

NOTEBOOK := notebooks/image_captioning_seminar.ipynb
BONUS_NOTEBOOK := notebooks/image_captioning_bonus.ipynb
# Short training for CI's run of both notebooks (the whole `make test` must stay well under 45 min);
# no models for the bonus notebook's table (each row is a `caption evaluate` of 1000 Flickr8k photos).
CI_NOTEBOOK_ENV := CAPTION_EPOCHS=3 CAPTION_BATCHES_PER_EPOCH=40 CAPTION_RUN_DIR=$(CURDIR)/runs/nbval \
                   CAPTION_BONUS_MODELS=$(CURDIR)/runs/nbval/no-models

.PHONY: setup test unit demo notebook bonus-notebook assignment grade bench bench-cnn clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@if [ -z "$(PYTHON311)" ] || ! "$(PYTHON311)" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then \
	  echo "error: Python 3.11 is needed (Theano 1.0.5 + numpy 1.23.5). Install it (pyenv install 3.11, or your package manager) or run: make setup PYTHON311=/path/to/python3.11" >&2; exit 2; fi
	@[ -x $(PY) ] || "$(PYTHON311)" -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# optional speed-ups for Theano's C code, built for this machine (captioning/stack/speed/fastmath.py)
	$(PY) -m captioning.stack.speed.fastmath || echo "(optional) no vectorised exp/log: Theano keeps its scalar loops"
	$(PY) -m captioning.stack.speed.fastmath --pch || echo "(optional) no precompiled header: slower cold compiles"
	@echo "compiling the seminar's train graph once (warm Theano cache for tests and notebook)..."
	$(PY) benchmarks/bench_train_step.py --compile-only
	@touch $@
	@echo "setup done: $(VENV) ready"

test: setup
	@start=$$(date +%s); \
	rm -rf runs/nbval; \
	$(CI_NOTEBOOK_ENV) $(PY) -m pytest -p no:cacheprovider --durations=15 tests --nbval-lax --current-env --nbval-cell-timeout=3000 notebooks; rc=$$?; \
	echo "suite wall time: $$(( $$(date +%s) - start )) s"; exit $$rc

# The fast tests only (no cold compiles, subprocesses or CNNs; a few minutes
# with the warm cache `make setup` leaves).
unit: setup
	$(PY) -m pytest -p no:cacheprovider -m "not slow" --durations=15 tests

# The main job: run the seminar notebook headless (default data and training
# length; override e.g. `make demo CAPTION_EPOCHS=5 CAPTION_DATA=synthetic`).
# It prints each section and the training as they run, then the final losses,
# a few captions for new photos and the figures' paths. Executed copy and
# figures go to runs/demo/.
demo: setup
	CAPTION_RUN_DIR=$(CURDIR)/runs/demo $(PY) -m captioning.notebook.run $(NOTEBOOK) runs/demo/$(notdir $(NOTEBOOK))

# Maintainers: re-run the full training and commit the worked solution.
notebook: setup
	rm -rf runs/notebook
	CAPTION_RUN_DIR=$(CURDIR)/runs/notebook $(PY) -m captioning.notebook.run $(NOTEBOOK) $(NOTEBOOK) --scrub-dataset-outputs

# Coursework (README, "For instructors"): the student edition of the notebook
# (not committed), and grading handed-in notebooks: SUBMISSION is one .ipynb or a
# folder of them; GRADE_ARGS e.g. --timeout 600 --out DIR --data DIR.
assignment: setup
	$(PY) -m captioning.notebook.assignment $(NOTEBOOK) release/$(notdir $(NOTEBOOK))

grade: setup
	@if [ -z "$(SUBMISSION)" ]; then echo "usage: make grade SUBMISSION=path.ipynb (or a folder of them)" >&2; exit 2; fi
	$(PY) -m captioning.notebook.grade "$(SUBMISSION)" $(GRADE_ARGS)

# Maintainers: the bonus notebook's full run (its attention model trained in the notebook; the table
# evaluates the models in CAPTION_BONUS_MODELS, default runs/bonus/: see its part 4), committed.
bonus-notebook: setup
	rm -rf runs/bonus-notebook
	CAPTION_RUN_DIR=$(CURDIR)/runs/bonus-notebook $(PY) -m captioning.notebook.run $(BONUS_NOTEBOOK) $(BONUS_NOTEBOOK) --scrub-dataset-outputs

# CNN encoders' images/s (Lasagne EfficientNet-Lite0, Lasagne GoogLeNet, onnxruntime).
bench-cnn: setup
	$(PY) benchmarks/bench_cnn.py

# Theano vs PyTorch CPU train step of the seminar graph, then of the attention
# model (its ratio is the last line); torch is a bench-only extra
# (requirements-bench.txt), installed on first use with numpy kept.
# BENCH_ARGS=--sizes large for E=H=512, batch 100, L=20 (seminar graph);
# ATTENTION_BENCH_ARGS=--threads 1, --ticks 22, --profile (attention model). An
# OPENBLAS_CORETYPE in the environment forces OpenBLAS's kernels; the bench
# prints which ones run.
bench: setup
	@$(PY) -c 'import torch' 2>/dev/null || \
	  { $(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt -c requirements.txt && $(PY) -m pip check; }
	$(PY) benchmarks/bench_train_step.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_attention_step.py $(ATTENTION_BENCH_ARGS)

clean:
	rm -rf $(VENV) .theano_cache runs build release
