# Two commands do all set-up on a fresh machine:
#   make run    -> builds .venv, starts the dashboard on the bundled default (no network needed)
#   make test   -> builds .venv, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The stamps carry the checksum of their requirements file, so a changed file gives a new stamp name
# and a reinstall; an unchanged file (even if touched, e.g. by a checkout) reuses the venv. That is why
# the stamp rules below have no file prerequisites: make would compare modification times instead.
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
# Browser tests: Playwright from PyPI into the venv, Debian's chromium (never `playwright install`).
BSTAMP := $(VENV)/.browser-$(shell cksum requirements-browser.txt | cut -d' ' -f1)

.PHONY: run test test-all browser browser-test bench venv clean

venv: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Playwright into the venv (once per requirements-browser.txt), then Chromium: installed with
# apt-get when missing and root, otherwise the script says what to do and the browser test
# skips (or fails under CI=true).
browser: $(BSTAMP)
	bash scripts/install_browser.sh

$(BSTAMP): | $(STAMP)
	$(PY) -m pip install --quiet -r requirements-browser.txt
	rm -f $(VENV)/.browser-*
	touch $(BSTAMP)

run: $(STAMP)
	$(PY) -m app.serve

test: $(STAMP) browser
	$(PY) -m pytest -q -n 2 --dist loadscope

browser-test: $(STAMP) browser
	$(PY) -m pytest -q tests/browser

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) .pytest_cache
