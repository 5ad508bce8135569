# The one place that knows how to set up, test, demo and build Pilot.
# Every target installs what it needs when missing.

PYTHON_BOOT := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo dist bench venv consul test-deps clean

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

consul:
	build/install-consul.sh

test-deps:
	build/install-test-deps.sh

test: venv consul test-deps
	$(PY) -m pytest -q tests

demo: venv consul
	$(PY) examples/demo.py

dist: venv
	build/build.sh

bench: venv consul
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .cache dist
