# Everything a newcomer needs: `make demo`, `make test`. Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ISSUE  := issues/2020-12.yaml

.PHONY: install demo test lint snapshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter check $(ISSUE)
	$(BIN)/newsletter build $(ISSUE) --out dist
	@echo
	@echo "The email (HTML):     dist/2020-12/email.html"
	@echo "The plain-text part:  dist/2020-12/email.txt"
	@echo "The web version:      dist/2020-12/index.html"
	@echo "Sending comes with a later release; see README.md."

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check components subscribers mailer newsletter tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Regenerate the golden files in tests/snapshots/; review them with `git diff`.
snapshots: $(STAMP)
	NEWSLETTER_UPDATE_SNAPSHOTS=1 $(BIN)/python -m pytest -q tests/test_snapshots.py

bench: $(STAMP)
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_subscribers.py

clean:
	rm -rf dist outbox .pytest_cache .mypy_cache .ruff_cache
