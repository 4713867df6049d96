# ce2l_jax — set-up, tests and the demo. Everything installs from this repo's own files.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The first Python >= 3.12 that actually runs (pyenv shims answer `command -v` but may fail to run).
PYTHON_CANDIDATES := python3.13 python3.12 python3 python
FIND_PYTHON = for p in $(PYTHON_CANDIDATES); do \
    if $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then echo $$p; exit 0; fi; done; \
  for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -V); do \
    if PYENV_VERSION=$$v python3 -c '' 2>/dev/null; then echo "env PYENV_VERSION=$$v python3"; exit 0; fi; done; \
  echo "none"
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=
JOBS ?= 2
# CUDA=1 (or 12) installs jax's CUDA 12 build, CUDA=13 the CUDA 13 one (pyproject extras cuda, cuda13).
CUDA ?=
comma := ,
EXTRAS := test$(if $(filter 1 12,$(CUDA)),$(comma)cuda)$(if $(filter 13,$(CUDA)),$(comma)cuda13)
# one stamp per set of extras, so `make venv CUDA=1` on a CPU venv installs the CUDA build
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv test demo bench tables paper-table clean-venv

$(STAMP): pyproject.toml
	@if [ -n "$(CUDA)" ] && [ -z "$(filter 1 12 13,$(CUDA))" ]; then echo "error: CUDA=$(CUDA): use CUDA=1 (CUDA 12) or CUDA=13" >&2; exit 1; fi
	@py="$$($(FIND_PYTHON))"; \
	if [ "$$py" = none ]; then echo "error: ce2l_jax needs Python >= 3.12 (jax >= 0.11); install one (pyenv install 3.12) and rerun make" >&2; exit 1; fi; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$py"; $$py -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@$(PY) -c 'import jax; print("jax", jax.__version__, "backend:", jax.default_backend(), jax.devices())'
	@touch $@

venv: $(STAMP)

test: venv
	$(PY) -m pytest -n $(JOBS) -q $(PYTEST_ARGS)

demo: venv
	$(PY) run.py --config=configs/synthetic.py --workdir=$(WORKDIR)

# Every synthetic results table (both twins, every ablation row, seeds 0-2): hours on 2 cores.
# TABLES_ARGS=--reduced (fewer steps, RegDB trial 1) or e.g. --twins=sysu --seeds=0.
TABLES_ARGS ?=
tables: venv
	$(PY) benchmarks/synthetic_tables.py $(TABLES_ARGS)

# The paper's comparison table on the synthetic twins (every missing row is run first; hours on a
# CPU). PAPER_TABLE_ARGS='--rows=lomo,hog --seeds=0,1' or '--real' (docs/notes/paper_table.md).
PAPER_TABLE_ARGS ?=
paper-table: venv
	$(PY) -m ce2l_jax.paper_table --run $(PAPER_TABLE_ARGS)

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
