# Everything a newcomer needs: `make demo`, `make test`. Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ISSUE  := issues/2020-12.yaml

.PHONY: install demo test lint snapshots bench clean caniemail

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The demo uses its own database and outbox, and a signing key that is public (it is printed here):
# never use it for real lists; make one with python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.
DEMO_SECRET := make-demo-key-published-in-the-Makefile-8Kq2vX7pLr4T
DEMO_ENV := NEWSLETTER_DATABASE_URL=sqlite:///demo.db NEWSLETTER_TRANSPORT=file NEWSLETTER_OUTBOX=outbox \
	NEWSLETTER_FROM="LVRN News <news@lancsvrn.example>" NEWSLETTER_SECRET=$(DEMO_SECRET)

DEMO_ADMIN := admin@lancsvrn.example
DEMO_PASSWORD := demo-console-password-not-for-real-use

demo: $(STAMP)
	rm -rf demo.db demo.db-wal demo.db-shm outbox
	$(BIN)/newsletter check $(ISSUE)
	$(BIN)/newsletter build $(ISSUE) --out dist
	$(DEMO_ENV) $(BIN)/newsletter lists create demo --title "LVRN News (demo)"
	$(DEMO_ENV) $(BIN)/newsletter subscribers import examples/demo-subscribers.csv --list demo
	$(DEMO_ENV) $(BIN)/newsletter send $(ISSUE) --list demo --yes
	printf '%s\n' '$(DEMO_PASSWORD)' | $(DEMO_ENV) $(BIN)/newsletter users add $(DEMO_ADMIN) --role admin --password-stdin
	@echo
	@echo "The email (HTML):     dist/2020-12/email.html"
	@echo "The plain-text part:  dist/2020-12/email.txt"
	@echo "The web version:      dist/2020-12/index.html"
	@echo "The messages sent:    outbox/2020-12_demo/*.eml (one per subscriber)"
	@echo "Their links work with the web service running (unsubscribe, archive, and the console):"
	@echo '  $(DEMO_ENV) .venv/bin/newsletter serve --with-worker'
	@echo
	@echo "Then open the console on the demo data: http://127.0.0.1:8025/admin/"
	@echo "  sign in as $(DEMO_ADMIN) with the password $(DEMO_PASSWORD) (demo only: it is printed here)"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check components subscribers mailer newsletter tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Regenerate the golden files in tests/snapshots/; review them with `git diff`.
snapshots: $(STAMP)
	NEWSLETTER_UPDATE_SNAPSHOTS=1 $(BIN)/python -m pytest -q tests/test_snapshots.py

# Refresh the vendored caniemail.com data from npm (VERSION=x.y.z pins one); review the diff.
caniemail:
	sh components/caniemail/refresh.sh $(VERSION)

bench: $(STAMP)
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_subscribers.py
	$(BIN)/python bench/bench_send.py
	$(BIN)/python bench/bench_events.py
	$(BIN)/python bench/bench_web.py
	$(BIN)/python bench/bench_console.py --pg

clean:
	rm -rf dist outbox demo.db demo.db-wal demo.db-shm .pytest_cache .mypy_cache .ruff_cache
