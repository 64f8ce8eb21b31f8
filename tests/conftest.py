"""Shared fixtures: the repository, built issues, a real headless chromium."""
from __future__ import annotations

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
