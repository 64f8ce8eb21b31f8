"""The service's HTML pages: plain, accessible, themed like the newsletter, no JavaScript."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

# No third-party resources, no framing, and no Referer: page URLs carry tokens.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; img-src 'self' https: data:; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Link:
    url: str
    text: str


class Pages:
    def __init__(self, theme: Any, organisation: str, postal_address: str):
        self.env = Environment(loader=PackageLoader("newsletter.web", "templates"),
                               autoescape=select_autoescape(["html"]), auto_reload=False)
        self.common = {"t": theme, "c": theme.colors, "organisation": organisation, "postal_address": postal_address}

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**self.common, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def message(self, title: str, *paragraphs: str, status: int = 200, link: Link | None = None) -> HTMLResponse:
        return self.render("message.html", status, title=title, paragraphs=paragraphs, link=link)


def mask(email: str) -> str:
    """a****e@example.org: enough for its owner to recognise, not enough to harvest."""
    local, _, domain = email.partition("@")
    if len(local) <= 2:
        return f"{local[:1]}***@{domain}"
    return f"{local[0]}{'*' * min(len(local) - 2, 6)}{local[-1]}@{domain}"
