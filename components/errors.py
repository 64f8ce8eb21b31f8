"""The one exception family of the components package.

The edge (newsletter/) maps these to exit codes; nothing here prints or exits.
"""
from __future__ import annotations

from dataclasses import dataclass


class ComponentError(Exception):
    """Base of every error raised by components/."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an issue file, with the place it was found."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = ""  # how to fix it, where the message alone would leave an author guessing
    rule: str = "invalid"  # the `check` rule it is reported under

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        said = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{said}\n    hint: {self.hint}" if self.hint else said


class IssueInvalid(ComponentError):
    """The issue file has one or more problems; all of them are listed."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class ThemeError(ComponentError):
    """A theme is missing or malformed."""


class RenderError(ComponentError):
    """MJML or a template failed: a bug in a component, not in the issue."""
