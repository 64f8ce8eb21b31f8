"""A numbered list of links to every section of the issue."""
from ..fields import BlockFields, Text

MAIN_FIELD = "title"
# Section titles carry the numbers the contents list shows.
NUMBERS_SECTIONS = True


class Fields(BlockFields):
    title: Text = "Contents"
