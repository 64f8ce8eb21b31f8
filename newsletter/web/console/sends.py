"""Console pages: every send, live; one send's report and chart; pause, resume, cancel; recipients as CSV.

The same library calls as `sends ls|pause|resume|cancel` and `report SLUG [--chart] [--recipients STATE
--csv]`, each narrowed to one send. Live parts are htmx fragments polled every 2 s while a send may
still move by itself; without JavaScript a plain "Refresh" link reloads the page.
"""
from __future__ import annotations

import io
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Generator
from itertools import islice
from typing import IO, Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..http import BadRequest, call, service_of
from .guard import Me, audit, form_text, page, see_other
from .view import ADMIN_HEADERS, fragment, problem, render, with_notice

FAILURES_SHOWN = 50  # the first failed or unknown recipients the page lists; the CSV has them all
# What each hand action says once done (the CLI's `sends pause|resume|cancel` says the same).
DONE = {"pause": "paused: messages in flight finish; the rest wait until it is resumed.",
        "resume": "queued again: a worker takes it up.",
        "cancel": "cancelled: nothing more is sent; what was sent stays recorded."}


# --- every send ----------------------------------------------------------------------------------------


def _all_sends(db: Any) -> dict[str, Any]:
    from mailer.jobs import list_sends, shown_as_json
    from mailer.progress import created_times, done_of, is_moving
    rows = list_sends(db)  # newest first
    created = created_times(db)
    shown = [{**shown_as_json(row), "reason": row["reason"], "done": done_of(row), "created": created.get(row["id"])}
             for row in rows]
    return {"sends": shown, "live": any(is_moving(row["state"], row["reason"]) for row in rows)}


@page("viewer")
async def sends_page(request: Request, me: Me) -> Response:
    values = await call(_all_sends, service_of(request).db)
    return render(request, me, "sends.html", title="Sends", **values)


@page("viewer")
async def sends_table(request: Request, me: Me) -> Response:
    return fragment(me, "send_table.html", **await call(_all_sends, service_of(request).db))


# --- one send --------------------------------------------------------------------------------------------


def _send_id(request: Request) -> int:
    """The id in the path; anything else is a send that does not exist (404)."""
    from mailer.jobs import SendNotFound
    raw = request.path_params["ref"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise SendNotFound(f"There is no send {raw!r}.")
    return int(raw)


def _status(db: Any, send_id: int) -> Any:
    from mailer.progress import send_status
    return send_status(db, send_id)


def _details(db: Any, send_id: int, me: Me) -> dict[str, Any]:
    """Everything the page shows besides the live part: warnings, who may have missed it, failures."""
    from mailer.reports import STATES, warnings

    from ...reporting import MISSED
    status = _status(db, send_id)
    report = status.report
    missed = [(state, report[state], MISSED[state]) for state in MISSED if report[state]]
    return {"job": status, "warnings": warnings(report), "missed": [] if status.moving else missed,
            "states": [(state, report[state]) for state in STATES],
            "failures": _failures(db, report) if me.may("editor") else []}


def _failures(db: Any, report: Any) -> list[Any]:
    """The first failed, then unknown, recipients with their reasons (addresses: editors and above)."""
    from mailer.reports import recipients
    out: list[Any] = []
    for state in ("failed", "unknown"):
        if report[state] and len(out) < FAILURES_SHOWN:
            people = cast(Generator[Any, None, None],
                          recipients(db, report["issue"], state, send_id=report["id"], chunk=FAILURES_SHOWN))
            out += islice(people, FAILURES_SHOWN - len(out))
            people.close()  # ends its read transaction now, not when the garbage collector gets to it
    return out


def _estimate(request: Request, pending: int) -> str:
    """How long the rest takes at the account's rate and quota, as `send` says it."""
    from ...queueing import send_estimate
    s = service_of(request)
    return send_estimate(s.settings, s.transport(), pending)


@page("viewer")
async def send_page(request: Request, me: Me) -> Response:
    send_id = _send_id(request)
    values = await call(_details, service_of(request).db, send_id, me)
    job = values["job"]
    pending = job.report["pending"]
    time_left = await call(_estimate, request, pending) if job.moving and pending else ""
    return render(request, me, "send.html", title=f"Send {send_id}", time_left=time_left, **values)


@page("viewer")
async def send_live(request: Request, me: Me) -> Response:
    status = await call(_status, service_of(request).db, _send_id(request))
    return fragment(me, "send_live.html", job=status)


# --- the chart: `report --chart`'s drawing, as PNG bytes ------------------------------------------------

_PYPLOT = threading.Lock()  # pyplot keeps global state: one figure at a time in this process


def _chart_png(db: Any, send_id: int) -> bytes:
    from mailer.reports import timeline

    from ...chart import make_figure
    status = _status(db, send_id)
    series = timeline(db, status.report["issue"], send_id=send_id)
    with _PYPLOT:
        figure = make_figure(series, status.report["issue"], [status.report])
        import matplotlib.pyplot as plt
        try:
            out = io.BytesIO()
            figure.savefig(out, format="png", dpi=110)
        finally:
            plt.close(figure)
    return out.getvalue()


@page("viewer")
async def send_chart(request: Request, me: Me) -> Response:
    png = await call(_chart_png, service_of(request).db, _send_id(request))
    return Response(png, media_type="image/png", headers=ADMIN_HEADERS)


# --- recipients in one state, as CSV (personal data: editors and above) ---------------------------------


@page("editor")
async def recipients_csv(request: Request, me: Me) -> Response:
    from mailer.reports import STATES, write_recipients_csv
    db = service_of(request).db
    send_id = _send_id(request)
    state = request.query_params.get("state", "")
    if state not in STATES:
        raise BadRequest(f"Choose the recipients' state: one of {', '.join(STATES)}.")
    report = (await call(_status, db, send_id)).report
    await audit(request, me, "console.sends.recipients", f"send {send_id}: {state} recipients as CSV")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{report['issue']}-{report['list']}-{send_id}-{state}.csv")
    return StreamingResponse(
        _streamed(lambda out: write_recipients_csv(db, report["issue"], state, out, send_id=send_id)),
        media_type="text/csv; charset=utf-8",
        headers={**ADMIN_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


class _Stopped(Exception):
    """The client went away: the writer stops where it is."""


class _Pipe(io.StringIO):
    """What the CSV writer writes to: text gathered into chunks handed to the response through a short queue,
    so the writer waits for a slow client instead of filling memory."""

    CHUNK = 64 * 1024

    def __init__(self, chunks: queue.Queue[Any], gone: threading.Event):
        super().__init__()
        self.chunks, self.gone = chunks, gone

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.tell() >= self.CHUNK:
            self.push()
        return written

    def push(self) -> None:
        data = self.getvalue()
        self.seek(0)
        self.truncate()
        if data:
            self.hand(data.encode("utf-8"))

    def hand(self, item: Any) -> None:
        while not self.gone.is_set():
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped


async def _streamed(write: Callable[[IO[str]], object]) -> AsyncIterator[bytes]:
    """Run `write(out)` in a thread of its own (its read transaction stays on one thread from start to end)
    and yield what it writes as it comes."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=8)
    gone = threading.Event()
    pipe = _Pipe(chunks, gone)

    def produce() -> None:
        try:
            write(pipe)
            pipe.push()
            pipe.hand(None)  # the end
        except _Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - handed to the response, which re-raises it
            try:
                pipe.hand(exc)
            except _Stopped:
                pass

    threading.Thread(target=produce, name="console-csv", daemon=True).start()
    try:
        while True:
            item = await run_in_threadpool(chunks.get)
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        gone.set()


# --- pause, resume, cancel (senders and admins) ---------------------------------------------------------


def _move(db: Any, send_id: int, action: str) -> tuple[str, str]:
    """The send's state after `action` (jobs.pause/resume/cancel, as `newsletter sends ...`), and its name."""
    from mailer import jobs
    report = _status(db, send_id).report
    name = "/".join(x for x in (report["issue"], report["list"], report["segment"]) if x)  # as SEND is written
    return getattr(jobs, action)(db, send_id), name


async def _act(request: Request, me: Me, action: str) -> Response:
    from mailer.jobs import SendStateError
    send_id = _send_id(request)
    try:
        state, name = await call(_move, service_of(request).db, send_id, action)
    except SendStateError as exc:
        return problem(request, me, "Not possible", f"{exc}. Reload the send's page to see where it stands.",
                       status=409)
    await audit(request, me, f"console.sends.{action}", f"send {send_id} ({name}): {state}")
    return with_notice(see_other(f"/admin/sends/{send_id}"), f"Send {send_id} {DONE[action]}")


@page("sender")
async def pause(request: Request, me: Me) -> Response:
    return await _act(request, me, "pause")


@page("sender")
async def resume(request: Request, me: Me) -> Response:
    return await _act(request, me, "resume")


@page("sender")
async def cancel_form(request: Request, me: Me) -> Response:
    status = await call(_status, service_of(request).db, _send_id(request))
    return render(request, me, "send_cancel.html", title=f"Cancel send {status.report['id']}", job=status,
                  error="")


@page("sender")
async def cancel(request: Request, me: Me) -> Response:
    form = await request.form()
    if form_text(form, "confirm") != "yes":
        status = await call(_status, service_of(request).db, _send_id(request))
        return render(request, me, "send_cancel.html", 400, title=f"Cancel send {status.report['id']}",
                      job=status, error="Tick “Yes, cancel this send” to cancel it.")
    return await _act(request, me, "cancel")


ROUTES = [
    Route("/sends", sends_page, methods=["GET", "HEAD"]),
    Route("/sends/table", sends_table, methods=["GET"]),  # before /sends/{ref}, which would take it
    Route("/sends/{ref}", send_page, methods=["GET", "HEAD"]),
    Route("/sends/{ref}/live", send_live, methods=["GET"]),
    Route("/sends/{ref}/chart.png", send_chart, methods=["GET", "HEAD"]),
    Route("/sends/{ref}/recipients.csv", recipients_csv, methods=["GET"]),
    Route("/sends/{ref}/pause", pause, methods=["POST"]),
    Route("/sends/{ref}/resume", resume, methods=["POST"]),
    Route("/sends/{ref}/cancel", cancel_form, methods=["GET", "HEAD"]),
    Route("/sends/{ref}/cancel", cancel, methods=["POST"]),
]
