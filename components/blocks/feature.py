"""An image beside text (left or right) on desktop, above it on a phone, with an optional button."""
from typing import Literal

from ..fields import BlockFields, Image, OptionalText, Text
from .button import Fields as Button

LAYOUT = "section"
CSS_FROM = ("text", "button")  # its text is Markdown; its button is a button


class Fields(BlockFields):
    image: Image
    title: Text
    text: OptionalText = ""  # Markdown
    button: Button | None = None
    image_side: Literal["left", "right"] = "left"
