"""`newsletter preview`: screenshots, live reload over real HTTP, and refusing a bad issue.

Every test drives the installed `newsletter` command as a real subprocess, the
way an author runs it, and talks to the preview server over loopback HTTP.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from components import load_issue, load_theme, render_issue

from .conftest import ISSUES, REFERENCE

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
OLD_HEADING = "Operation Encompass to extend to colleges"
NEW_HEADING = "Operation Encompass now reaches every college"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 30) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def _copy_reference(tmp_path: Path) -> Path:
    """issues/2020-12.yaml and its images/ in a folder of our own, free to edit."""
    folder = tmp_path / "issues"
    shutil.copytree(ISSUES / "2020-12" / "images", folder / "2020-12" / "images")
    path = folder / "2020-12.yaml"
    shutil.copy(REFERENCE, path)
    return path


# --- (a) screenshots ---------------------------------------------------------------------

def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@pytest.mark.browser
def test_screenshots_desktop_and_mobile(tmp_path: Path, browser: Any) -> None:
    # `browser` only to skip (or, in CI, fail) where there is no chromium.
    shots = tmp_path / "shots"
    result = _run(["preview", str(REFERENCE), "--screenshots", str(shots)], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    colours = load_theme(load_issue(REFERENCE).fields.theme).colors
    for name, width in (("desktop", 1024), ("mobile", 375)):
        path = shots / f"{name}.png"
        assert f"Wrote {path}" in result.stdout
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width == width, f"{name}.png is {image.width} px wide"
            assert image.height > 2000, f"{name}.png is not a full-page shot ({image.height} px high)"
            pixels = image.convert("RGB")
            distinct = pixels.getcolors(maxcolors=1 << 20)
            assert distinct is not None and len(distinct) > 50, f"{name}.png looks blank"
            found = {colour for _, colour in distinct}
            # The masthead's brand colour and the page background are really painted.
            assert _rgb(colours.primary) in found, f"{name}.png has no masthead colour {colours.primary}"
            assert _rgb(colours.body_bg) in found, f"{name}.png has no page background {colours.body_bg}"
        assert path.stat().st_size > 20_000
    # On a desktop the 600 px email sits centred on the page background; on a phone it fills the width.
    background, brand = _rgb(colours.body_bg), _rgb(colours.primary)
    with Image.open(shots / "desktop.png") as desktop:
        rgb = desktop.convert("RGB")
        assert {rgb.getpixel((10, y)) for y in range(0, 2000)} == {background}
        assert brand in {rgb.getpixel((512, y)) for y in range(0, 400)}
    with Image.open(shots / "mobile.png") as mobile:
        assert brand in {mobile.convert("RGB").getpixel((10, y)) for y in range(0, 400)}
    # Dark mode (prefers-color-scheme emulated): the theme's dark palette is painted, and the
    # body text is light on the dark card, never dark on dark.
    dark = load_theme(load_issue(REFERENCE).fields.theme).colors_dark
    assert dark is not None
    for name, width in (("desktop-dark", 1024), ("mobile-dark", 375)):
        path = shots / f"{name}.png"
        assert f"Wrote {path}" in result.stdout
        with Image.open(path) as image:
            assert image.width == width
            rgb = image.convert("RGB")
            found = {colour for _, colour in rgb.getcolors(maxcolors=1 << 20) or []}
            assert _rgb(dark.text) in found, f"{name}.png has no text in the dark text colour"
            # A column inside the card's left padding: the dark card all the way down, never the light one.
            x = (width - 600) // 2 + 6 if width > 600 else 6
            column = [rgb.getpixel((x, y)) for y in range(700, min(rgb.height, 6000), 7)]
            assert _rgb(colours.content_bg) not in column, f"{name}.png still paints the light card"
            assert column.count(_rgb(dark.content_bg)) > len(column) / 2, f"{name}.png: the card is not dark"


# --- (b) live reload ---------------------------------------------------------------------

@pytest.fixture
def live_preview(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """`newsletter preview` of a copy of the reference issue, running on a free port."""
    issue = _copy_reference(tmp_path)
    port = _free_port()
    proc = subprocess.Popen([NEWSLETTER, "preview", str(issue), "--port", str(port)], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"preview exited with {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            return _get(base + "/__version", timeout=5)[0] == 200
        except OSError:
            return False

    try:
        _wait_for(answers, "the preview server to answer")
        yield base, issue, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _version(base: str) -> str:
    status, kind, body = _get(base + "/__version")
    assert status == 200 and kind.startswith("text/plain")
    assert body, "empty version"
    return body.decode()


def _page(base: str) -> str:
    status, kind, body = _get(base + "/")
    assert status == 200 and kind.startswith("text/html")
    return body.decode("utf-8")


def test_live_reload_follows_edits_to_the_issue(live_preview: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, issue, proc = live_preview
    first = _version(base)
    page = _page(base)
    assert OLD_HEADING in page and NEW_HEADING not in page
    assert "/__version" in page and "location.reload()" in page  # the page polls for changes
    assert "{{" not in page  # merge fields show sample values
    assert _version(base) == first  # nothing changed, nothing to reload

    text = issue.read_text("utf-8")
    assert text.count(OLD_HEADING) == 1
    issue.write_text(text.replace(OLD_HEADING, NEW_HEADING), "utf-8")

    second = _wait_for(lambda: (v := _version(base)) != first and v, "/__version to change after the edit")
    page = _page(base)
    assert NEW_HEADING in page and OLD_HEADING not in page
    assert _version(base) == second

    proc.terminate()
    proc.wait(10)
    assert f"at http://127.0.0.1:{base.rsplit(':', 1)[1]}/" in proc.stdout.read()  # type: ignore[union-attr]


def test_images_of_the_page_are_served(live_preview: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, issue, _ = live_preview
    page = _page(base)
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    local = [s for s in sources if s.startswith(base + "/")]
    assert len(local) >= 8, f"expected the issue's images on {base}, found {sources}"

    # The issue's own images, and what the templates publish beside them (the icons the project ships).
    assets = render_issue(issue).assets
    assert any(f.is_relative_to(issue.parent / "2020-12") for f in assets.values())
    for src in sorted(set(local)):
        status, kind, body = _get(src)
        assert status == 200, src
        assert kind == "image/png", f"{src}: {kind}"
        assert body == assets[src.split("/archive/2020-12/", 1)[1]].read_bytes(), src  # icons included

    status, _, _ = _get(base + "/archive/2020-12/images/no-such-image.png")
    assert status == 404
    status, _, _ = _get(base + "/../2020-12.yaml")
    assert status == 404


def test_live_reload_follows_a_changed_image(live_preview: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, issue, _ = live_preview
    first = _version(base)
    images = issue.parent / "2020-12" / "images"
    replacement = (images / "mias-story.png").read_bytes()
    assert replacement != (images / "captain-calm-story.png").read_bytes()
    (images / "captain-calm-story.png").write_bytes(replacement)

    _wait_for(lambda: _version(base) != first, "/__version to change after an image changed")
    src = re.search(r'src="([^"]*/captain-calm-story\.png)"', _page(base)).group(1)  # type: ignore[union-attr]
    assert _get(src)[2] == replacement


def test_live_reload_shows_errors_then_recovers(live_preview: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, issue, proc = live_preview
    first = _version(base)
    good = issue.read_text("utf-8")
    issue.write_text(good.replace("\n            alt: Excerpts from the Captain Calm story\n", "\n", 1), "utf-8")

    second = _wait_for(lambda: (v := _version(base)) != first and v, "/__version to change after breaking")
    page = _page(base)
    assert "The issue has errors" in page
    assert re.search(r"2020-12\.yaml:\d+:\d+: .*image: alt is required", page)
    assert "/__version" in page  # still polling, so fixing the file reloads it
    assert proc.poll() is None, "the preview server died on an invalid edit"

    issue.write_text(good.replace(OLD_HEADING, NEW_HEADING), "utf-8")
    _wait_for(lambda: _version(base) != second, "/__version to change after fixing")
    page = _page(base)
    assert NEW_HEADING in page and "The issue has errors" not in page


# --- (c) an invalid issue ----------------------------------------------------------------

def test_preview_refuses_an_invalid_issue_listing_every_problem(write_issue: Callable[..., Path],
                                                                tmp_path: Path) -> None:
    path = write_issue(
        "subject: Broken\n"
        "blocks:\n"
        "  - text: Hello\n"
        "  - image: {src: images/pic.png}\n"
        "  - carousel: [a, b]\n"
    )
    result = _run(["preview", str(path), "--port", str(_free_port())], cwd=tmp_path, timeout=60)

    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert re.search(rf"{re.escape(str(path))}:4:\d+: blocks\[1\]\.image: alt is required", result.stderr)
    assert re.search(rf"{re.escape(str(path))}:5:\d+: blocks\[2\]: unknown block type 'carousel' \(known: .*text",
                     result.stderr)
    assert "Previewing" not in result.stdout


def test_preview_of_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    result = _run(["preview", str(tmp_path / "nope.yaml"), "--port", str(_free_port())], cwd=tmp_path, timeout=60)

    assert result.returncode == 1
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
