"""Images side by side (2 or 3 a row on desktop), stacked on a phone."""
from typing import Literal

from pydantic import Field

from ..fields import BlockFields, Image

LAYOUT = "section"
LIST_FIELD = "images"
CSS_FROM = ("image",)  # its captions


class Fields(BlockFields):
    images: list[Image] = Field(min_length=2)
    columns: Literal[2, 3] | None = None

    @property
    def per_row(self) -> int:
        if self.columns:
            return self.columns
        return 3 if len(self.images) % 3 == 0 and len(self.images) % 2 else 2

    @property
    def rows(self) -> list[list[Image]]:
        n = self.per_row
        return [self.images[i:i + n] for i in range(0, len(self.images), n)]
