# kdlab: every target creates .venv and installs the kit into it when needed,
# so each one works on its own on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help lab run test bench clean-notebooks check-notebooks clean distclean

help:  ## list the targets
	@echo "make lab    - open JupyterLab on notebooks/"
	@echo "make run    - execute the notebook sequence headless into a new folder under runs/"
	@echo "make test   - unit tests, notebooks in smoke mode (nbval), papermill smoke runs"
	@echo "make bench  - speed benchmarks (see docs/BENCHMARKS.md)"
	@echo "make clean-notebooks - strip outputs from notebooks/ before committing"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

run: $(STAMP)
	$(PY) -m kdlab run $(ARGS)

# conftest.py sets KDLAB_SMOKE=1, so the notebooks run in smoke mode here.
test: $(STAMP)
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(ARGS)

clean-notebooks: $(STAMP)
	$(PY) tools/clean_notebooks.py notebooks

check-notebooks: $(STAMP)
	$(PY) tools/clean_notebooks.py --check notebooks

clean:
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
