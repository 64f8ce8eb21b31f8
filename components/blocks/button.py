"""A call-to-action button; its label must say where it goes."""
from ..fields import BlockFields, Text, Url


class Fields(BlockFields):
    label: Text
    url: Url
