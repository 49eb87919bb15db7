# Two commands on a fresh Debian 12 machine:  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng sox asterisk-core-sounds-en-wav
APT_PACKAGES += chromium  # the dashboard's browser test (Playwright drives /usr/bin/chromium)

.PHONY: deps venv demo test lint check clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BIN)/earpiece: pyproject.toml
	$(MAKE) deps
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/earpiece

demo: venv
	$(BIN)/earpiece demo

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check earpiece tests
	$(BIN)/mypy --strict earpiece
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layout.py

check: lint test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
