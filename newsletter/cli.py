"""The `newsletter` command line (design §4): thin commands over the library.

Each command parses its options, calls one library function and turns
domain errors into exit status 1 with one clear message. Heavy imports
(MJML, premailer, playwright) happen inside the commands that need them, so
`newsletter --help` and simple commands start fast.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import click

from .cli_audience import db, lists, subscribers
from .cli_base import Obj, edge
from .cli_console import tokens, users
from .cli_events import events
from .cli_jobs import sends, set_list, worker
from .cli_segments import segments
from .cli_send import report, send, test_send


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Configuration file (default: ./newsletter.toml if present).")
@click.version_option(package_name="newsletter-pipeline")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Write, build, check and preview email newsletters."""
    _defer_imports("requests")
    ctx.obj = Obj(config)


def _defer_imports(*names: str) -> None:
    """Import these modules on first use rather than when some library imports them.

    premailer imports `requests` (and with it urllib3, charset_normalizer,
    idna and certifi: a sixth of a `newsletter build`) only to fetch remote
    stylesheets, which components/inline.py never lets it do. Nothing of
    ours uses requests; whatever does gets the real module on first use.
    (importlib.util.LazyLoader cannot do this: the next `import` statement
    reads the module's __spec__, which loads it.)
    """
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = _OnFirstUse(name)


class _OnFirstUse(types.ModuleType):
    """A stand-in in sys.modules that imports the real module when an attribute is first asked for."""

    _lock = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        with self._lock:
            real = self.__dict__.get("_real")
            if real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                real = self.__dict__["_real"] = importlib.import_module(self.__name__)
        return getattr(real, attribute)


@main.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"),
              show_default=True, help="Folder to write <slug>/ into.")
@click.pass_obj
@edge
def build(obj: Obj, issue: Path, out: Path) -> None:
    """Render ISSUE.yaml into OUT/<slug>/: email.html, email.txt, index.html and images."""
    from .build import build as build_issue
    rendered, folder = build_issue(issue, out, obj.settings)
    size = len(rendered.html.encode("utf-8")) / 1024
    click.echo(f"Built {issue} -> {folder}/")
    click.echo(f"  email.html  {size:.1f} KB (Gmail clips past 102 KB)")
    click.echo("  email.txt   plain-text part")
    click.echo("  index.html  web version")
    if rendered.assets:
        click.echo(f"  images/     {len(rendered.assets)} file(s)")


@main.command()
@click.argument("issues", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
@edge
def check(obj: Obj, issues: tuple[Path, ...], as_json: bool) -> None:
    """Validate and lint issues; exit 1 on any error."""
    from .check import check_files, report_text
    findings = check_files(list(issues), obj.settings)
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        click.echo(report_text(findings, len(issues)), err=any(f.level == "error" for f in findings))
    if any(f.level == "error" for f in findings):
        sys.exit(1)


@main.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8026, show_default=True)
@click.option("--screenshots", "shots", type=click.Path(file_okay=False, path_type=Path),
              help="Write desktop.png and mobile.png into this folder and exit.")
@click.pass_obj
@edge
def preview(obj: Obj, issue: Path, port: int, shots: Path | None) -> None:
    """Serve the email on localhost, reloading when the issue or a template changes."""
    from components import load_issue

    from .preview import serve_preview
    load_issue(issue)  # refuse an invalid issue up front, with every problem listed
    ready = lambda url: click.echo(f"Previewing {issue} at {url} (Ctrl-C to stop)")  # noqa: E731
    written = serve_preview(issue, obj.settings, 0 if shots else port, ready, shots)
    for path in (written or {}).values():
        click.echo(f"Wrote {path}")


@main.command()
@click.argument("slug")
@edge
def new(slug: str) -> None:
    """Scaffold issues/SLUG.yaml."""
    from .scaffold import new_issue
    path = new_issue(slug)
    click.echo(f"Created {path}; edit it, then: newsletter check {path}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8025, show_default=True)
@click.option("--with-worker", is_flag=True, help="Also run due sends in this process (one worker thread).")
@click.pass_obj
@edge
def serve(obj: Obj, host: str, port: int, with_worker: bool) -> None:
    """Serve unsubscribe, sign-up, the archive, the SNS webhook (design §7) and the console (/admin/)."""
    import logging

    import uvicorn

    from .config import masked_url
    from .web.app import create_app
    app = create_app(obj.settings, db=obj.db)
    settings = obj.settings
    click.echo(f"Serving on http://{host}:{port} (database {masked_url(settings.database_url)}; links in emails "
               f"use {settings.base_url}; Ctrl-C to stop)")
    click.echo(f"The console: http://{host}:{port}/admin/ (make its first admin with `newsletter users add EMAIL "
               "--role admin`)" + ("" if with_worker else "; sends started there wait for `newsletter worker`"
                                   " (or serve with --with-worker)"))
    # The app's own warnings (a client gone mid-upload, a sign-up that failed), one line each.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:  %(name)s: %(message)s")
    # proxy_headers off: uvicorn would trust X-Forwarded-For from any loopback client; the app reads it
    # only from NEWSLETTER_TRUSTED_PROXIES (web/clients.py).
    with _worker_thread(obj if with_worker else None):
        uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


@contextlib.contextmanager
def _worker_thread(obj: Obj | None) -> Any:
    """`serve --with-worker`: the embedded default's worker, a thread beside the web app (design §12)."""
    if obj is None:
        yield
        return
    import threading

    from .worker import worker_thread
    stop = threading.Event()
    thread = worker_thread(obj.settings, obj.db, stop)
    click.echo("Running due sends in this process (--with-worker).")
    try:
        yield
    finally:
        stop.set()  # the send in hand stops after its in-flight messages; the rest stay pending
        thread.join(30)


for command in (lists, subscribers, db, send, test_send, report, events, segments, sends, worker):
    main.add_command(command)
lists.add_command(set_list)
main.add_command(users)
main.add_command(tokens)

if __name__ == "__main__":  # pragma: no cover
    main()
