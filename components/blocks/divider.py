"""A thin rule between parts of a section."""
from ..fields import BlockFields


class Fields(BlockFields):
    pass
