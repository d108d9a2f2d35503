# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test validate bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_demo.py

validate: $(STAMP)
	$(VENV)/bin/nnspec validate specs/*.yaml specs/*/*.yaml

test: $(STAMP)
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) bench/train_overhead.py
	$(PY) bench/serve.py

clean:
	rm -rf $(VENV) runs models .pytest_cache
