VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/ddz demo --out runs/demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check ddz tests bench
	$(VENV)/bin/python -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/distill_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
