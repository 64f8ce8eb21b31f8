"""The reference issue (LVRN, December 2020) carries every sentence of the seed."""
from __future__ import annotations

import pytest

from components import load_issue
from components.lint import GMAIL_CLIP, check_issue

from .conftest import FIXTURES, REFERENCE
from .text_utils import normalise, seed_sentences, visible_text

SEED = (FIXTURES / "lvrn-news-december-2020.txt").read_text("utf-8")
SENTENCES = seed_sentences(SEED)


def test_seed_is_split_into_many_sentences():
    # Guards the test below against a splitter that finds next to nothing.
    assert len(SENTENCES) > 150
    assert "Captain Calm to the rescue!" in SENTENCES


def _missing(text: str) -> list[str]:
    haystack = normalise(text)
    return [s for s in SENTENCES if normalise(s) not in haystack]


def test_every_seed_sentence_is_in_the_email_html(reference_rendered):
    assert _missing(visible_text(reference_rendered.html)) == []


def test_every_seed_sentence_is_in_the_web_version(reference_rendered):
    assert _missing(visible_text(reference_rendered.web_html)) == []


def test_every_seed_sentence_is_in_the_text_part(reference_rendered):
    assert _missing(reference_rendered.text) == []


def test_a_changed_sentence_would_be_caught(reference_rendered):
    damaged = reference_rendered.text.replace("1,090 books", "1,900 books")
    assert _missing(damaged) == [s for s in SENTENCES if "1,090 books" in s]


def test_reference_is_under_gmail_clip(reference_rendered):
    assert len(reference_rendered.html.encode("utf-8")) <= GMAIL_CLIP


def test_reference_passes_check_with_no_errors(reference_rendered):
    findings = check_issue(load_issue(REFERENCE), reference_rendered)
    assert [f for f in findings if f.level == "error"] == []


def test_contents_links_every_section(reference_rendered):
    issue = load_issue(REFERENCE)
    assert [s.number for s in issue.sections] == [1, 2, 3, 4, 5, 6, 7]
    for section in issue.sections:
        assert f'href="#{section.anchor}"' in reference_rendered.html
        assert f'id="{section.anchor}"' in reference_rendered.html


@pytest.mark.parametrize("needle", ["99%", "65%", "Listen to the Walk the Talk podcast", "Twitter: @LancsVRN"])
def test_reference_shows_its_figures_and_panels(reference_rendered, needle):
    assert needle in visible_text(reference_rendered.html)


def test_text_part_is_readable(reference_rendered):
    text = reference_rendered.text
    assert "<" not in text.replace("<=", "")  # no markup leaks into the plain part
    assert "1. Trauma informed Lancashire\n=" in text  # headings kept, underlined
    assert "https://www.lancsvrn.co.uk/" in text  # links written out
    assert "Unsubscribe: {{ unsubscribe_url }}" in text
    assert max(len(line) for line in text.splitlines()) <= 120
