# kdlab: every target creates .venv and installs the kit into it when needed,
# so each one works on its own on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv lab run book test bench clean-notebooks check-notebooks clean distclean

help:  ## list the targets
	@echo "make lab    - open JupyterLab on notebooks/"
	@echo "make run    - execute the notebook sequence headless into a new folder under runs/"
	@echo "make book   - render the newest run as a static website in <run>/book/ (ARGS=--force replaces it)"
	@echo "make test   - unit tests, notebooks in smoke mode (nbval), papermill smoke runs"
	@echo "make bench  - speed benchmarks (see docs/BENCHMARKS.md)"
	@echo "make clean-notebooks - strip outputs from notebooks/ before committing"
	@echo "make check-notebooks - fail if a notebook in notebooks/ is not committed clean"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

run: $(STAMP)
	$(PY) -m kdlab run $(ARGS)

# The newest runs/run-* folder unless ARGS names one: ARGS="runs/run-20250101-120000 --force".
book: $(STAMP)
	$(PY) -m kdlab book $(ARGS)

# conftest.py sets KDLAB_SMOKE=1, so the notebooks run in smoke mode here. Two pytest workers
# (pytest-xdist): most of the suite waits on kernels starting, so two share even 2 cores well
# (26 -> 17 min here, docs/BENCHMARKS.md); --dist loadfile keeps each file, and so each
# notebook's cells and each module's fixtures, in one worker. TEST_JOBS=1 runs them one by one.
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider \
		$(if $(filter-out 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(ARGS)

# nbstripout's defaults (outputs, execution counts, widget state), plus papermill's records;
# --keep-id keeps the cells' ids, which it would otherwise renumber. The kernelspec is
# checked by tests/test_notebooks.py.
NBSTRIPOUT = $(VENV)/bin/nbstripout --keep-id --extra-keys "metadata.papermill cell.metadata.papermill"

clean-notebooks: $(STAMP)
	$(NBSTRIPOUT) notebooks/*.ipynb

check-notebooks: $(STAMP)
	@$(NBSTRIPOUT) --verify notebooks/*.ipynb || { echo "run make clean-notebooks before committing"; exit 1; }

clean:
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
