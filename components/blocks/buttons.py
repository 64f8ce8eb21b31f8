"""Buttons side by side (they wrap onto more lines on a phone)."""
from typing import Literal

from pydantic import Field

from ..fields import BlockFields
from .button import Fields as Button

LIST_FIELD = "items"
CSS_FROM = ("button",)  # dark mode: the colours of every button


class Fields(BlockFields):
    items: list[Button] = Field(min_length=1, max_length=6)
    align: Literal["left", "center"] = "left"
