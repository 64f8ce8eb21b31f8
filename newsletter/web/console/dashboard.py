"""The console's first page: the lists, the latest sends, and the bounce and complaint rates."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import call, service_of
from .guard import Me, page
from .view import render


def _sends(db: Any) -> dict[str, Any]:
    from mailer.jobs import list_sends, shown_as_json
    sends = [shown_as_json(row) for row in list_sends(db)]
    sends.sort(key=lambda send: send["id"], reverse=True)
    sent = sum(send["sent"] for send in sends)
    return {"sends": sends[:8], "sent": sent,
            "bounce_rate": sum(send["bounced_hard"] for send in sends) / sent if sent else None,
            "complaint_rate": sum(send["complained"] for send in sends) / sent if sent else None}


@page("viewer")
async def dashboard(request: Request, me: Me) -> Response:
    from subscribers import list_lists
    db = service_of(request).db
    # Two independent counts over big tables: side by side, each on its own connection (SQLite's
    # reads run in parallel under WAL, and its C code lets go of the GIL while it steps).
    lists, sends = await asyncio.gather(call(list_lists, db), call(_sends, db))
    return render(request, me, "dashboard.html", title="Dashboard", lists=lists, **sends)


ROUTES = [Route("/", dashboard, methods=["GET", "HEAD"])]
