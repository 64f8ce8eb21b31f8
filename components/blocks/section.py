"""A numbered section: a `<h2>` title with an anchor, then its own blocks."""
from typing import Any

from pydantic import Field

from ..fields import BlockFields, OptionalText, Text

LAYOUT = "container"
CHILDREN_FIELD = "blocks"


class Fields(BlockFields):
    title: Text
    # The label in the contents list, when it should differ from the title.
    contents_title: OptionalText = ""
    # Anchor name for the contents link; derived from the title when absent.
    id: OptionalText = ""
    blocks: list[Any] = Field(min_length=1)
