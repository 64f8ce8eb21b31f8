"""`newsletter preview`: the email on localhost, reloaded when its sources change.

A stdlib HTTP server keeps start-up lean. The page polls /__version and
reloads when the issue file, its images, a template or a theme changes.
With --screenshots, headless chromium writes desktop.png and mobile.png, and
desktop-dark.png and mobile-dark.png with prefers-color-scheme: dark emulated.
"""
from __future__ import annotations

import mimetypes
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import components
from components import ComponentError, RenderedIssue, clear_template_cache, substitute

from .config import Settings

# What a reader of the preview sees for the merge fields.
SAMPLE = {"first_name": "", "email": "reader@example.org", "unsubscribe_url": "#unsubscribe"}
DESKTOP, MOBILE = 1024, 375
RELOAD = """<script>
(function(){var v=null;setInterval(function(){fetch('/__version').then(function(r){return r.text()})
.then(function(t){if(v!==null&&t!==v){location.reload()}v=t}).catch(function(){})},800)})();
</script>"""


def watched_files(issue_path: Path) -> list[Path]:
    roots = [Path(components.__file__).parent / "templates", Path(components.__file__).parent / "themes",
             issue_path.parent / issue_path.stem]
    files = [issue_path]
    for root in roots:
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file()]
    return files


def fingerprint(issue_path: Path) -> str:
    return str(hash(tuple((str(p), p.stat().st_mtime_ns) for p in watched_files(issue_path) if p.exists())))


def preview_html(rendered: RenderedIssue) -> str:
    return substitute(rendered.html, SAMPLE, escape=True)


class _State:
    """The latest render, redone when the sources change."""

    def __init__(self, render: Callable[[], RenderedIssue], issue_path: Path):
        self.render, self.issue_path = render, issue_path
        self.lock = threading.Lock()
        self.version = ""
        self.page = ""
        self.assets: dict[str, Path] = {}

    def refresh(self) -> None:
        with self.lock:
            version = fingerprint(self.issue_path)
            if version == self.version:
                return
            try:
                clear_template_cache()  # a template or theme may be what changed
                rendered = self.render()
                self.page = preview_html(rendered).replace("</body>", RELOAD + "</body>")
                self.assets = {f"/archive/{rendered.slug}/{k}": v for k, v in rendered.assets.items()}
            except ComponentError as exc:
                self.page = _error_page(str(exc))
            self.version = version


def _error_page(message: str) -> str:
    from html import escape
    return (f"<!doctype html><meta charset=utf-8><title>Issue has errors</title>"
            f"<h1>The issue has errors</h1><pre>{escape(message)}</pre>{RELOAD}")


def make_server(render: Callable[[], RenderedIssue], issue_path: Path, port: int) -> ThreadingHTTPServer:
    state = _State(render, issue_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.refresh()
            if self.path == "/__version":
                self._send(200, "text/plain", state.version.encode())
            elif self.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", state.page.encode())
            elif self.path in state.assets:
                kind = mimetypes.guess_type(self.path)[0] or "application/octet-stream"
                self._send(200, kind, state.assets[self.path].read_bytes())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: it polls every 800 ms
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def chromium_path() -> str:
    return os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium")


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


SCHEMES: tuple[tuple[str, Literal["light", "dark"]], ...] = (("", "light"), ("-dark", "dark"))
SHOTS = [(f"{device}{suffix}", width, scheme) for suffix, scheme in SCHEMES
         for device, width in (("desktop", DESKTOP), ("mobile", MOBILE))]


def screenshots(url: str, folder: Path) -> dict[str, Path]:
    """desktop.png (1024 px) and mobile.png (375 px) of the page at `url`, light and dark."""
    from playwright.sync_api import Error, sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                for name, width, scheme in SHOTS:
                    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
                    page.goto(url, wait_until="load")
                    out[name] = folder / f"{name}.png"
                    page.screenshot(path=str(out[name]), full_page=True)
                    page.close()
            finally:
                browser.close()
    except Error as exc:
        raise ComponentError(f"chromium could not take the screenshots ({chromium_path()}): {exc.message}") from None
    return out


def serve_preview(issue_path: Path, settings: Settings, port: int,
                  on_ready: Callable[[str], None], shots: Path | None = None) -> dict[str, Path] | None:
    from .build import render_configured

    def render() -> RenderedIssue:  # images are served by the preview itself, so it is the base URL
        base = f"http://127.0.0.1:{server.server_address[1]}"
        return render_configured(components.load_issue(issue_path), settings, base_url=base)

    server = make_server(lambda: render(), issue_path, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    if shots is not None:
        try:  # screenshots of the error page would say nothing: the error itself goes to the author
            render()
        except BaseException:
            server.server_close()
            raise
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            return screenshots(url, shots)
        finally:
            server.shutdown()
            server.server_close()
    on_ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return None
