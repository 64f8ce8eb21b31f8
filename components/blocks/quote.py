"""A quotation or testimonial with who said it."""
from ..fields import BlockFields, OptionalText, Text

MAIN_FIELD = "text"


class Fields(BlockFields):
    text: Text
    cite: OptionalText = ""
