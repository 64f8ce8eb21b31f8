"""Shared fixtures: the repository, built issues, a real headless chromium."""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ISSUES = ROOT / "issues"
REFERENCE = ISSUES / "2020-12.yaml"
EXAMPLES = sorted(ISSUES.glob("*.yaml"))
FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def reference_rendered():
    from components import render_issue
    return render_issue(REFERENCE)


@pytest.fixture
def issue_dir(tmp_path: Path) -> Path:
    """An issues/ folder with one real image, for crafted issue files."""
    folder = tmp_path / "issues"
    (folder / "t" / "images").mkdir(parents=True)
    shutil.copy(ISSUES / "2020-12" / "images" / "mias-story.png", folder / "t" / "images" / "pic.png")
    return folder


@pytest.fixture
def write_issue(issue_dir: Path):
    def write(text: str, name: str = "t.yaml") -> Path:
        path = issue_dir / name
        path.write_text(text, "utf-8")
        return path
    return write


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A real headless chromium; skipped without one, except in CI where it is required."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("NEWSLETTER_REQUIRE_BROWSER"):
            pytest.fail(f"chromium is required (NEWSLETTER_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    from newsletter.preview import CHROMIUM_ARGS
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


# --- databases: every storage test runs on SQLite and on PostgreSQL ----------------------------------

PG_URL = os.environ.get("NEWSLETTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin():
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        if os.environ.get("NEWSLETTER_TEST_PG_URL"):
            pytest.fail(f"PostgreSQL at NEWSLETTER_TEST_PG_URL is required but unreachable: {exc.orig}")
        pytest.skip("PostgreSQL not reachable (set NEWSLETTER_TEST_PG_URL to require it)")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with pg_schema_url() as url:
        yield url


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL schema of its own, dropped afterwards."""
    import uuid

    from sqlalchemy import text
    admin = _pg_admin()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(db_url: str):
    from subscribers import open_database
    database = open_database(db_url)
    yield database
    database.dispose()
