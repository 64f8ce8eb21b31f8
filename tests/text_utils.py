"""Helpers for comparing the seed text with what the pipeline produced."""
from __future__ import annotations

import re

import lxml.html

# Obvious typing slips fixed in issues/2020-12.yaml (nothing else was changed).
CORRECTIONS = {
    "beskpoke": "bespoke",
    "infomed": "informed",
    "voluntering": "volunteering",
    "anout": "about",
    "Operaton Sceptre": "Operation Sceptre",
    "would like to received": "would like to receive",
    "childrens social care": "children's social care",
    "7. Contact": "Contact",  # the contact block is not a numbered section
}
# Lines of the web page the seed was copied from, not of the newsletter.
PAGE_CHROME = {"View Static Version", "Loading"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“‘'])")


def normalise(text: str) -> str:
    """Compare words, not typography: quotes, dashes and spacing vary by design."""
    return " ".join(re.sub(r"[^0-9A-Za-z%]+", " ", text).split())


def seed_sentences(seed: str) -> list[str]:
    for wrong, right in CORRECTIONS.items():
        seed = seed.replace(wrong, right)
    sentences = []
    for line in seed.splitlines():
        line = line.replace("\xa0", " ").strip()
        if line and line not in PAGE_CHROME:
            sentences += [s for s in _SENTENCE_END.split(line) if normalise(s)]
    return sentences


def visible_text(html: str) -> str:
    """What a reader sees: no head, styles, or hidden preheader."""
    doc = lxml.html.document_fromstring(html)
    for node in doc.xpath("//head|//style|//script|//*[contains(@style,'display:none')]"):
        node.drop_tree()
    # Block boundaries are whitespace to a reader; lxml's text_content() glues them.
    return " ".join(doc.itertext())
