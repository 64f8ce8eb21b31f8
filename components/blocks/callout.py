"""A highlighted pull-out sentence on a tinted panel."""
from ..fields import BlockFields, Text

MAIN_FIELD = "text"


class Fields(BlockFields):
    text: Text
