"""One full-width image with an optional caption and link."""
from ..fields import Image

Fields = Image
