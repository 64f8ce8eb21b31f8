"""The validated issue: top-level fields and a tree of blocks."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .fields import BlockFields, Text
from .registry import Component

# Written right to left: a primary language subtag, or a script subtag, from these.
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "syr", "ug", "ur", "yi"})
RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg"})


class Accepted(BaseModel):
    """A `check` warning the issue's authors reviewed and accept, with why (errors cannot be accepted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Text
    reason: Text


class IssueFields(BaseModel):
    """The top level of an issue file (format 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    subject: Text
    preheader: str = ""
    date: dt.date | None = None
    theme: str = "default"
    lang: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    blocks: list[Any] = Field(min_length=1)
    accept: list[Accepted] = Field(default_factory=list)

    @property
    def direction(self) -> str:
        """`rtl` or `ltr`, from the language: by its script subtag if it has one, else its language."""
        parts = self.lang.lower().split("-")
        script = next((p for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
        return "rtl" if (script in RTL_SCRIPTS if script else parts[0] in RTL_LANGUAGES) else "ltr"


@dataclass(frozen=True)
class Block:
    component: Component
    fields: BlockFields
    path: str  # as shown in errors: blocks[3].section.blocks[1].image
    file: str
    line: int
    children: tuple[Block, ...] = ()
    number: int | None = None  # sections: their place in the contents

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def anchor(self) -> str:
        explicit = getattr(self.fields, "id", "")
        return explicit or f"section-{self.number}"

    def walk(self) -> list[Block]:
        return [self, *(b for child in self.children for b in child.walk())]


@dataclass(frozen=True)
class Issue:
    """A whole, valid issue, ready to render."""

    slug: str
    source: Path
    shown: str  # the path as the user wrote it, for messages
    fields: IssueFields
    blocks: tuple[Block, ...]
    assets: dict[str, Path] = field(default_factory=dict)  # src -> file on disk

    @property
    def sections(self) -> list[Block]:
        return [b for b in self.blocks if b.number is not None]

    def walk(self) -> list[Block]:
        return [b for top in self.blocks for b in top.walk()]
