"""A numbered list of links to every section of the issue."""
from ..fields import BlockFields, Text

MAIN_FIELD = "title"


class Fields(BlockFields):
    title: Text = "Contents"
