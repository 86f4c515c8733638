# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

# ood-metrics is the test oracle of the official Mask2Anomaly FPR95; its release pins numpy<2, which
# its code does not need, so it is installed without its pins (its own needs are in the test extra).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps ood-metrics==1.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mask2anomaly demo --out runs/demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/model.py

clean:
	rm -rf $(VENV) runs .pytest_cache
