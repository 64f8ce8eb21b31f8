"""Statistics as large figures on cards of equal height, two or three a row, stacked on a phone."""
from pydantic import Field

from ..fields import BlockFields, OptionalText, Text

LIST_FIELD = "items"


class Stat(BlockFields):
    value: Text
    label: OptionalText = ""


class Fields(BlockFields):
    items: list[Stat] = Field(min_length=1)

    @property
    def rows(self) -> list[list[Stat]]:
        n = 3 if len(self.items) in (3, 5, 6) else 2
        if len(self.items) == 1:
            n = 1
        return [self.items[i:i + n] for i in range(0, len(self.items), n)]
