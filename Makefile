# Two commands do all the set-up:  `make demo` (check → plan → train the demo → chat)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0: a CPU build on the CI machines; on a GPU box run `gpudoctor install-torch` afterwards.
TORCH ?= torch==2.13.0

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[train,nlp,dev,amd]'
	touch $@

demo: setup
	$(VENV)/bin/gpudoctor demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache runs
