VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test check system bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/ddz demo --out runs/demo

# System packages the tests need (SLURM, munge, git): installed once, never from inside a test.
system:
	bash scripts/setup-system.sh

# Two pytest-xdist workers, one torch thread each (tests/conftest.py); SLURM tests share one worker.
PYTEST := $(VENV)/bin/python -m pytest -q -n 2 --dist loadgroup --durations 15

# The whole suite: what the README and CI run.
test: $(VENV)/.installed system
	$(VENV)/bin/ruff check ddz tests bench
	$(PYTEST)

# The fast part for everyday work: everything but the end-to-end and cluster tests (marked slow).
check: $(VENV)/.installed system
	$(VENV)/bin/ruff check ddz tests bench
	$(PYTEST) -m "not slow"

bench: $(VENV)/.installed
	$(PY) bench/distill_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
