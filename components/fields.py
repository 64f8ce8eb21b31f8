"""Field types shared by the block schemas.

Every field except Markdown `text` is plain text: the templates escape it.
URLs are checked here because a `javascript:` link must never reach a reader.
"""
from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from .merge import EXPRESSION, TOKEN_RE, address_problem

SAFE_SCHEMES = ("http", "https", "mailto")


class BlockFields(BaseModel):
    """Base of every block's field schema: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _url(value: str) -> str:
    value = value.strip()
    problem = address_problem(value)  # a subscriber's field must never be where a link goes
    if problem:
        raise ValueError(problem)
    # Merge fields may sit inside a URL; judge the URL with them removed.
    bare = TOKEN_RE.sub("x", EXPRESSION.sub("x", value))
    scheme = urlsplit(bare).scheme.lower()
    if scheme not in SAFE_SCHEMES:
        shown = scheme + ":" if scheme else "a relative URL"
        raise ValueError(f"link must be an http(s) or mailto: URL, not {shown}")
    if scheme in ("http", "https") and not urlsplit(bare).netloc:
        raise ValueError("link has no host")
    return value


def _src(value: str) -> str:
    value = value.strip()
    scheme = urlsplit(value).scheme.lower()
    if scheme and scheme != "https" and not (len(scheme) == 1 and value[1:3] in (":\\", ":/")):
        raise ValueError(f"image src must be a relative path or an https URL, not {scheme}:")
    if value.startswith("/") or value.startswith("\\"):
        raise ValueError("image src must be relative to the issue file, not absolute")
    return value


Text = Annotated[str, StringConstraints(min_length=1)]
OptionalText = Annotated[str, StringConstraints()]
Url = Annotated[str, StringConstraints(min_length=1), AfterValidator(_url)]
ImageSrc = Annotated[str, StringConstraints(min_length=1), AfterValidator(_src)]


class Image(BlockFields):
    """An image: shared by the image block, the gallery and the masthead logo."""

    src: ImageSrc
    # Required. A decorative image (a flourish that says nothing) declares
    # `decorative: true` with `alt: ""`, so screen readers skip it on purpose.
    alt: str
    decorative: bool = False
    caption: OptionalText = ""
    href: Url | None = None
    width: int | None = None


def is_remote(src: str) -> bool:
    return src.startswith("https://")


def strings_in(value: Any) -> list[str]:
    """Every string inside a validated model, for linting merge fields."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in strings_in(getattr(value, name))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in strings_in(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    return []
