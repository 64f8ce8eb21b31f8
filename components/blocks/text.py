"""Markdown prose: paragraphs, lists, links. Raw HTML is sanitised (nh3)."""
from ..fields import BlockFields, Text

MAIN_FIELD = "text"


class Fields(BlockFields):
    text: Text
