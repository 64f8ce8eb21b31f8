"""A sub-heading inside a section (`<h3>`)."""
from ..fields import BlockFields, Text

MAIN_FIELD = "text"


class Fields(BlockFields):
    text: Text
