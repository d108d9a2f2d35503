# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast validate bench results clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

# The whole job: validate every example, train and export the digits CNN, then serve the repository.
run: $(STAMP)
	$(VENV)/bin/nnspec validate specs/*.yaml specs/*/*.yaml
	$(VENV)/bin/nnspec train specs/digits_cnn.yaml
	@echo
	@echo "Serving models/ on http://127.0.0.1:8000 (model pages: http://127.0.0.1:8000/, API docs: http://127.0.0.1:8000/docs). Try:"
	@echo "  curl -s -X POST http://127.0.0.1:8000/v1/models/digits-cnn:predict -H 'Content-Type: application/json' -d @examples/digits_request.json"
	@echo
	$(VENV)/bin/nnspec serve models --host 127.0.0.1 --port 8000

validate: $(STAMP)
	$(VENV)/bin/nnspec validate specs/*.yaml specs/*/*.yaml

test: $(STAMP)
	$(PY) -m pytest tests

# Everything but the tests marked slow (training runs, subprocesses, real servers): under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# Benchmarks rewrite their own sections of docs/; bench/serve.py uses wrk when installed (apt-get install wrk).
bench: $(STAMP)
	$(PY) bench/train_overhead.py --out docs/BENCHMARKS.md
	$(PY) bench/serve.py --out docs/BENCHMARKS.md

results: $(STAMP)
	$(PY) bench/accuracy.py --out docs/RESULTS.md

clean:
	rm -rf $(VENV) runs models .pytest_cache
