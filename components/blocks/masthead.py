"""The issue's masthead: the one `<h1>`, on the theme's brand colour."""
from ..fields import BlockFields, Image, OptionalText, Text

LAYOUT = "section"
MAIN_FIELD = "title"


class Fields(BlockFields):
    title: Text
    subtitle: OptionalText = ""
    logo: Image | None = None
