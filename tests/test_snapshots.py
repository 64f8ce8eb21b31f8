"""Golden snapshots of every example issue, reviewed as a diff.

Regenerate on purpose with `make snapshots`, then read `git diff tests/snapshots`.
"""
from __future__ import annotations

import os

import pytest

from components import render_issue

from .conftest import EXAMPLES, ROOT

SNAPSHOTS = ROOT / "tests" / "snapshots"
PARTS = {"email.html": "html", "email.txt": "text", "index.html": "web_html"}
UPDATE = bool(os.environ.get("NEWSLETTER_UPDATE_SNAPSHOTS"))


def test_there_are_two_example_issues():
    assert {p.stem for p in EXAMPLES} >= {"2020-12", "2021-01"}


@pytest.mark.parametrize("issue", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("part", list(PARTS))
def test_snapshot(issue, part):
    rendered = render_issue(issue)
    actual = getattr(rendered, PARTS[part])
    golden = SNAPSHOTS / issue.stem / part
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, "utf-8")
    assert golden.is_file(), f"no snapshot {golden}; run `make snapshots` and review the diff"
    assert actual == golden.read_text("utf-8"), f"{golden} differs; if intended, run `make snapshots`"
