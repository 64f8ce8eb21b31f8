"""Console page: import a CSV file into a list (design §13, §14), a dry run first, with live progress.

The same library call as `subscribers import` (subscribers.import_csv), in a thread of
this process (import_jobs.py): the answer to the upload is a 303 to the import's page,
which polls a fragment with htmx while it runs (a plain "Refresh" link without
JavaScript) and ends with the report and the rejected rows as a CSV download.
"""
from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from ..http import call, service_of
from .guard import MAX_UPLOAD, Me, audit, form_text, page, see_other, signed_in
from .import_jobs import Busy, ImportJobs, Job
from .view import ADMIN_HEADERS, fragment, problem, render, with_notice

# After the file's checks pass, how long the answer waits for a dry run to end, so that a
# small file's report is on the page it lands on rather than a second later.
DRY_RUN_GRACE = 2.0
RECENT = 20
DRAIN_LIMIT = 4 * MAX_UPLOAD  # read and dropped at most, to answer a too large upload with a page


def jobs_of(request: Request) -> ImportJobs:
    """This app's imports (one registry per app, made on first use)."""
    state = request.app.state
    jobs: ImportJobs | None = getattr(state, "imports", None)
    if jobs is None:
        from subscribers import audit as record
        jobs = state.imports = ImportJobs(service_of(request).db, record)
    return jobs


def _formats() -> list[tuple[str, str]]:
    from subscribers.formats import FORMATS, NAMES
    labels = {"auto": "Auto (by its columns)", "plain": "Plain CSV"}
    return [(name, labels.get(name) or f"{FORMATS[name].label} export") for name in NAMES]


async def _form(request: Request, me: Me, status: int = 200, error: str = "", chosen: str = "",
                format: str = "auto") -> Response:
    from subscribers.lists import list_choices
    lists = await call(list_choices, service_of(request).db)
    return render(request, me, "import.html", status, title="Import", lists=lists, formats=_formats(),
                  chosen=chosen or request.query_params.get("list", ""), format=format, error=error,
                  jobs=jobs_of(request).recent()[:RECENT], max_mb=MAX_UPLOAD // (1024 * 1024))


@page("editor")
async def import_page(request: Request, me: Me) -> Response:
    return await _form(request, me)


@page("editor", upload=True)
async def upload(request: Request, me: Me) -> Response:
    """Stage the file, start a dry run or an import of it, and answer once its checks have passed."""
    form = await request.form()
    list_name, format = form_text(form, "list"), form_text(form, "format", "auto")
    dry_run = form_text(form, "action", "dry-run") != "import"
    file = form.get("file")
    if not list_name:
        return await _form(request, me, 400, "Choose the list to import into.", "", format)
    if format not in dict(_formats()):
        return await _form(request, me, 400, f"Unknown format {format!r}.", list_name)
    if not isinstance(file, UploadFile) or not file.filename:
        return await _form(request, me, 400, "Choose a CSV file to upload.", list_name, format)
    jobs = jobs_of(request)
    staged = await call(jobs.stage, file.file, file.filename)
    try:
        job = await call(jobs.start, staged, list_name, format, dry_run, me.actor)  # it audits: a write
    except Busy as exc:
        staged.path.unlink(missing_ok=True)
        return await _form(request, me, 409, f"{exc}.", list_name, format)
    return await _begun(request, me, job, list_name)


async def _begun(request: Request, me: Me, job: Job, list_name: str) -> Response:
    await call(job.wait_begun, DRY_RUN_GRACE if job.dry_run else 0)
    if job.state == "failed" and not job.read_rows:
        # Refused before a row was read (not a CSV file, no such list): nothing happened; say so here.
        jobs_of(request).forget(job)
        return await _form(request, me, job.error_status, job.error, list_name, job.format)
    return see_other(f"/admin/import/{job.id}")


def _job(request: Request) -> Job | None:
    return jobs_of(request).get(request.path_params["id"])


def _gone(request: Request, me: Me) -> Response:
    return problem(request, me, "Import not found",
                   "This server has no import with that address. An import's page is kept for an hour after it "
                   "ends, by the server process that ran it (a restart forgets it).", status=404)


@page("editor")
async def job_page(request: Request, me: Me) -> Response:
    job = _job(request)
    if job is None:
        return _gone(request, me)
    return render(request, me, "import_job.html", title=f"{job.kind} of {job.upload.name}", job=job)


@page("editor")
async def job_progress(request: Request, me: Me) -> Response:
    """The live part of an import's page, for htmx; it stops polling once the import has ended."""
    job = _job(request)
    if job is None:
        # 286: htmx stops polling (a restarted server has forgotten the import).
        answer = fragment(me, "import_gone.html")
        answer.status_code = 286 if request.headers.get("hx-request") else 404
        return answer
    return fragment(me, "import_progress.html", job=job)


@page("editor")
async def import_dry_run(request: Request, me: Me) -> Response:
    """The "Import" of a dry run's page: the same uploaded file, list and format, for real."""
    dry = _job(request)
    if dry is None:
        return _gone(request, me)
    if not dry.dry_run or dry.state != "finished":
        return problem(request, me, "Not possible", "Only a finished dry run can be imported.", status=409)
    try:
        job = await call(jobs_of(request).import_after, dry, me.actor)
    except Busy as exc:
        return problem(request, me, "Please wait", f"{exc}.", status=409)
    if job is dry:  # started and gone meanwhile
        return with_notice(see_other(f"/admin/import/{dry.id}"), "This file has been imported already.")
    return see_other(f"/admin/import/{job.id}")


@page("editor")
async def rejects(request: Request, me: Me) -> Response:
    """Every rejected row as it was, with its line and reason: personal data, editors and above only."""
    job = _job(request)
    if job is None or not job.has_rejects:
        return problem(request, me, "Not found", "This import has no rejected rows to download.", status=404)
    if request.method == "GET":
        await audit(request, me, "console.import.rejects",
                    f"downloaded the {job.report.rejected} rejected rows of file {job.upload.name!r} "
                    f"(list {job.list_name})")
    stamp = job.started_at.strftime("%Y%m%d-%H%M")
    return FileResponse(job.rejects_path, media_type="text/csv; charset=utf-8", headers=ADMIN_HEADERS,
                        filename=f"rejects-{job.list_name}-{stamp}.csv", content_disposition_type="attachment")


# --- the size limit, before anything reads the body ----------------------------------------------------


class TooLarge(Exception):
    """The request body passed MAX_UPLOAD (a client that sent no Content-Length, or a wrong one)."""


def limited(endpoint: Any) -> Any:
    """Refuse a body over MAX_UPLOAD with 413: by its Content-Length before parsing it, and by counting
    as it arrives (the CSRF check parses the form; Starlette spools file parts to disk, not memory)."""
    async def guarded(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD:
            return await _too_large(request, int(declared))
        try:
            return await endpoint(Request(request.scope, _counting(request.receive)))  # type: ignore[no-any-return]
        except TooLarge:
            return await _too_large(request, 0)
    return guarded


def _counting(receive: Receive) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > MAX_UPLOAD:
            raise TooLarge
        return message
    return counted


async def _drain(receive: Receive, declared: int) -> None:
    """Read the rest of the body and drop it, so that the browser, which sends the whole file before it
    reads an answer, gets the 413 page and not a reset connection; past DRAIN_LIMIT the connection is
    just closed."""
    if declared > DRAIN_LIMIT:
        return
    seen = 0
    while seen <= DRAIN_LIMIT:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _too_large(request: Request, declared: int) -> Response:
    me = await signed_in(request)
    if me is not None:  # for someone signed in, not for anybody who sends a large body
        await _drain(request.receive, declared)
    answer = problem(request, me, "File too large",
                     f"The file is larger than {MAX_UPLOAD // (1024 * 1024)} MB, the most one upload may hold. "
                     "Split it into smaller files (each with the header row) and import them one after another.",
                     status=413)
    answer.headers["Connection"] = "close"  # what was not drained is not read
    return answer


ROUTES = [
    Route("/import", import_page, methods=["GET", "HEAD"]),
    Route("/import", limited(upload), methods=["POST"]),
    Route("/import/{id}", job_page, methods=["GET", "HEAD"]),
    Route("/import/{id}/progress", job_progress, methods=["GET"]),
    Route("/import/{id}/import", import_dry_run, methods=["POST"]),
    Route("/import/{id}/rejects.csv", rejects, methods=["GET", "HEAD"]),
]
