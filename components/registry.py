"""The block registry: each module in components/blocks/ is one component.

A component is a module holding its field schema (`Fields`) and a template
`templates/blocks/<name>.mjml.j2` with two macros, `mjml` and `text`, and its
own CSS beside them (macros `css`, `phone`, `dark`: see render.Styles).
Adding one touches nothing else: the registry finds it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from . import blocks as _blocks_pkg
from .fields import BlockFields

# How a block sits in the email: inside the running single column, as whole
# MJML sections of its own (multi-column blocks), or as a container of blocks.
LAYOUTS = ("column", "section", "container")


@dataclass(frozen=True)
class Component:
    name: str
    fields: type[BlockFields]
    main_field: str | None  # the field a bare string fills: `- text: "…"`
    list_field: str | None  # the field a bare list fills: `- gallery: [...]`
    layout: str
    children_field: str | None  # container blocks: the field holding nested blocks
    numbers_sections: bool  # its presence numbers the section titles (contents)
    module: ModuleType
    # Components whose CSS this one's template uses too (a feature's Markdown and button).
    css_from: tuple[str, ...] = ()

    def coerce(self, value: Any) -> Any:
        """Turn the short forms (string or number, list, null) into a mapping of fields."""
        if value is None:
            return {}
        if isinstance(value, (str, int)) and not isinstance(value, bool) and self.main_field:
            return {self.main_field: value}  # `- spacer: 32` too
        if isinstance(value, list) and self.list_field:
            return {self.list_field: value}
        return value


def _component(module: ModuleType) -> Component:
    layout = getattr(module, "LAYOUT", "column")
    if layout not in LAYOUTS:
        raise RuntimeError(f"{module.__name__}: LAYOUT must be one of {LAYOUTS}")
    return Component(
        name=module.__name__.rsplit(".", 1)[1],
        fields=module.Fields,
        main_field=getattr(module, "MAIN_FIELD", None),
        list_field=getattr(module, "LIST_FIELD", None),
        layout=layout,
        children_field=getattr(module, "CHILDREN_FIELD", None),
        numbers_sections=getattr(module, "NUMBERS_SECTIONS", False),
        module=module,
        css_from=tuple(getattr(module, "CSS_FROM", ())),
    )


@lru_cache(maxsize=1)
def components() -> dict[str, Component]:
    """All components by name, discovered once."""
    found = {}
    for info in pkgutil.iter_modules(_blocks_pkg.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{_blocks_pkg.__name__}.{info.name}")
            found[info.name] = _component(module)
    for component in found.values():
        unknown = set(component.css_from) - set(found)
        if unknown:
            raise RuntimeError(f"{component.name}: CSS_FROM names unknown components {sorted(unknown)}")
    return dict(sorted(found.items()))
