"""The console under /admin/ (design §13): server-rendered pages over the CLI's own library calls.

Each module owns one page (or a family of them) and exports ROUTES; guard.py decides who may
see and do what, view.py renders. Static files (the stylesheet, htmx) come from this package,
never from a CDN.
"""
from __future__ import annotations

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def console() -> list[Mount]:
    from . import dashboard, imports, issues, lists, login, people, sends, suppressions, users
    routes = [route for module in (login, dashboard, lists, people, imports, issues, sends, suppressions, users)
              for route in module.ROUTES]
    return [Mount("/admin/static", app=StaticFiles(packages=[("newsletter.web", "static")]), name="static"),
            Mount("/admin", routes=routes)]
