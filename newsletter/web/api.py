"""The JSON API under /api/ (design §13): bearer tokens from `newsletter tokens create`.

Each route names the least role that may call it: `viewer` reads, `editor` and
above change lists and subscribers. The library functions are the CLI's own
(`subscribers add` is `add_subscriber`, with its refusal of whoever left or is
suppressed), so no rule is written twice. Errors are `{"error": message}` with
400, 401, 403, 404 or 409 (503 while the database is down). Every write is kept
in the audit log, refused ones too.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import Receive, Scope, Send

from .http import BadRequest, status_of

MAX_BODY = 64 * 1024  # one subscriber with its fields
Handler = Callable[[Request, Any], Awaitable[Response]]


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _db(request: Request) -> Any:
    return request.app.state.service.db


async def _bearer(request: Request) -> Any:
    """The token of `Authorization: Bearer TOKEN`, or None."""
    from subscribers import token_of
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return await run_in_threadpool(token_of, _db(request), value.strip())


def needs(role: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """The route needs a token of at least `role`; domain errors become JSON errors."""
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            from subscribers import may
            try:
                token = await _bearer(request)
                if token is None:
                    return error(401, "a valid API token is required (Authorization: Bearer TOKEN)",
                                 **{"WWW-Authenticate": 'Bearer realm="newsletter"'})
                if not may(token.role, role):
                    return error(403, f"this token's role ({token.role}) may not do this; it needs {role} or above")
                return await handler(request, token)
            except Exception as exc:  # noqa: BLE001 - mapped below; anything else is re-raised
                status = status_of(exc)
                if status is None:
                    raise
                return error(status, str(exc) if status != 503 else "the database is unavailable; try again")
        return endpoint
    return wrap


async def _audited(request: Request, token: Any, action: str, detail: str, work: Callable[[], Any]) -> Any:
    """Run a write and keep it in the audit log, with its outcome (a refusal too)."""
    from subscribers import audit
    actor = f"token:{token.name}"
    try:
        result = await run_in_threadpool(work)
    except Exception as exc:
        if status_of(exc) in (400, 404, 409):
            await run_in_threadpool(audit, _db(request), actor, action, f"{detail}: refused: {exc}")
        raise
    await run_in_threadpool(audit, _db(request), actor, action, f"{detail}: {result}")
    return result


async def _json_body(request: Request) -> dict[str, Any]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"the body is larger than {MAX_BODY // 1024} KB")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object: {"email", "name", "fields"}')
    return body


def _subscriber_of(body: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """email, name, fields from a POSTed object; every problem at once."""
    problems = [f"unknown key {key!r}" for key in sorted(set(body) - {"email", "name", "fields"})]
    email, name, fields = body.get("email"), body.get("name", ""), body.get("fields", {})
    if not isinstance(email, str) or not email.strip():
        problems.append('"email" must be a non-empty string')
    if not isinstance(name, str):
        problems.append('"name" must be a string')
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        problems.append('"fields" must be an object of strings')
    if problems:
        raise BadRequest("; ".join(problems))
    return str(email), str(name), {str(k): str(v) for k, v in fields.items()}


# --- the routes -----------------------------------------------------------------------------------------


def _lists(request: Request) -> list[dict[str, Any]]:
    from subscribers import list_lists
    return list_lists(_db(request))


@needs("viewer")
async def lists_index(request: Request, token: Any) -> Response:
    return JSONResponse(await run_in_threadpool(_lists, request))


@needs("viewer")
async def list_detail(request: Request, token: Any) -> Response:
    from subscribers import ListNotFound
    name = request.path_params["name"]
    for found in await run_in_threadpool(_lists, request):
        if found["name"] == name:
            return JSONResponse(found)
    raise ListNotFound(f"no list {name!r}")


@needs("editor")
async def add_to_list(request: Request, token: Any) -> Response:
    """The same call as `subscribers add`: never re-subscribes who left or is suppressed (409)."""
    from subscribers import add_subscriber, normalise
    name = request.path_params["name"]
    email, person, fields = _subscriber_of(await _json_body(request))
    stored = normalise(email).email
    outcome = await _audited(request, token, "api.subscribers.add", f"{stored} -> {name}",
                             lambda: add_subscriber(_db(request), email, name, person, fields))
    return JSONResponse({"email": stored, "list": name, "outcome": outcome},
                        status_code=201 if outcome == "added" else 200)


@needs("editor")
async def remove_from_list(request: Request, token: Any) -> Response:
    """Unsubscribes (the person and their history stay, so they are never re-added by anyone else)."""
    from subscribers import unsubscribe
    name, email = request.path_params["name"], request.path_params["email"]
    outcome = await _audited(request, token, "api.subscribers.unsubscribe", f"{email.strip()} from {name}",
                             lambda: "unsubscribed" if unsubscribe(_db(request), email, name) else "unchanged")
    return JSONResponse({"email": email.strip(), "list": name, "unsubscribed": outcome == "unsubscribed"})


def _sends(request: Request, send_id: int | None = None) -> list[dict[str, Any]]:
    from mailer.jobs import list_sends, shown_as_json
    return [shown_as_json(row) for row in list_sends(_db(request), send_id)]  # as `sends ls --json`


@needs("viewer")
async def sends_index(request: Request, token: Any) -> Response:
    return JSONResponse(await run_in_threadpool(_sends, request))


@needs("viewer")
async def send_detail(request: Request, token: Any) -> Response:
    from mailer.jobs import SendNotFound
    send_id = request.path_params["id"]
    for found in await run_in_threadpool(_sends, request, send_id):  # that send only, not every report
        return JSONResponse(found)
    raise SendNotFound(f"no send {send_id}")


async def _no_route(scope: Scope, receive: Receive, send: Send) -> None:
    await error(404, "no such API route")(scope, receive, send)


ROUTES = [
    Route("/lists", lists_index, methods=["GET"]),
    Route("/lists/{name}", list_detail, methods=["GET"]),
    Route("/lists/{name}/subscribers", add_to_list, methods=["POST"]),
    Route("/lists/{name}/subscribers/{email}", remove_from_list, methods=["DELETE"]),
    Route("/sends", sends_index, methods=["GET"]),
    Route("/sends/{id:int}", send_detail, methods=["GET"]),
]


def _wrong_method(allowed: set[str]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return error(405, f"{request.method} is not allowed here (use {', '.join(sorted(allowed))})",
                     Allow=", ".join(sorted(allowed)))
    return endpoint


# Each path once more, for the other methods: a JSON 405 rather than the site's plain-text one.
# (Starlette takes a route matching path and method before one that matches the path alone.)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_ALLOWED = {path: {m for r in ROUTES if r.path == path for m in r.methods or ()} for path in [r.path for r in ROUTES]}
ROUTES += [Route(path, _wrong_method(allowed), methods=sorted(_METHODS - allowed))
           for path, allowed in _ALLOWED.items()]


def api() -> Mount:
    """/api/..., its own router, so an unknown API path is a JSON 404, not the site's page."""
    return Mount("/api", app=Router(routes=ROUTES, default=_no_route))
