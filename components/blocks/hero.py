"""A heading on a card over a wide background image (Outlook draws the image with VML)."""
from pydantic import Field

from ..fields import BlockFields, Image, OptionalText, Text
from .button import Fields as Button

LAYOUT = "section"
CSS_FROM = ("buttons",)  # its button is drawn as the buttons block draws one


class Fields(BlockFields):
    image: Image  # a background: its alt text is read in the text part
    title: Text
    text: OptionalText = ""
    button: Button | None = None
    height: int = Field(default=320, ge=160, le=640)  # px on desktop; a phone shows the card whole
