"""Empty space between blocks, `height` px tall."""
from pydantic import Field

from ..fields import BlockFields

MAIN_FIELD = "height"


class Fields(BlockFields):
    height: int = Field(default=24, ge=4, le=160)
