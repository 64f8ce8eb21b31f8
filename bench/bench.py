"""`make bench`: figures for the build and for `check` (issues 2 and 14). Prints; asserts nothing.

- in-process build of the reference issue (load + validate + render), median of 20, after one warm-up;
- in-process `check` of the reference issue repeated 1, 4 and 16 times (its blocks, images shared),
  with the time per copy: a check that is linear in the issue's size keeps that figure flat;
- the whole `newsletter build` process, median of 7, and node's `mjml` CLI compiling the reference
  issue's MJML, median of 7, with their ratio (mjml is installed from npm into a temporary folder;
  without npm, or offline, that line says why it was skipped);
- `newsletter --help` start-up, median of 5.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "issues" / "2020-12.yaml"
NEWSLETTER = Path(sys.executable).parent / "newsletter"
SCALES = (1, 4, 16)
MJML_VERSION = "4"


def _median_ms(run: Callable[[], Any], times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def scaled_issue(folder: Path, times: int) -> Path:
    """The reference issue with its blocks written `times` times over, beside a copy of its images."""
    head, marker, blocks = REFERENCE.read_text("utf-8").partition("\nblocks:\n")
    path = folder / f"reference-x{times}.yaml"
    path.write_text(head + marker + blocks * times, "utf-8")
    shutil.copytree(REFERENCE.parent / REFERENCE.stem, folder / path.stem)
    return path


def check_times(folder: Path) -> list[tuple[int, float, int]]:
    """(copies, median ms of an in-process check, findings) for each scale."""
    from newsletter.check import check_file
    from newsletter.config import load_settings
    settings = load_settings(None, environ={})
    out = []
    for times in SCALES:
        path = scaled_issue(folder, times)
        findings = check_file(path, settings)  # warm-up, and what it found
        ms = _median_ms(lambda path=path: check_file(path, settings), 3 if times < 16 else 1)  # type: ignore[misc]
        out.append((times, ms, len(findings)))
    return out


def mjml_cli(folder: Path, source: str) -> tuple[Path, Path] | str:
    """Node's mjml CLI installed into `folder` and the MJML file it compiles, or why not."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "npm or node is not installed"
    try:
        subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--silent",
                        f"mjml@{MJML_VERSION}"], check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"npm could not install mjml ({type(exc).__name__}; offline?)"
    cli = folder / "node_modules" / ".bin" / "mjml"
    if not cli.exists():
        return "npm installed no mjml command"
    issue = folder / "reference.mjml"
    issue.write_text(source, "utf-8")
    return cli, issue


def main() -> None:
    from components import load_issue, render_issue

    rendered = render_issue(REFERENCE)  # warm-up: template compilation, imports
    build_ms = _median_ms(lambda: render_issue(load_issue(REFERENCE)), 20)
    size_kb = len(rendered.html.encode()) / 1024
    print(f"reference issue HTML size           {size_kb:8.1f} KB   (Gmail clips past 102 KB)")
    print(f"in-process build, median of 20      {build_ms:8.1f} ms   (target <= 50 ms)")
    with tempfile.TemporaryDirectory() as scratch:
        for times, ms, count in check_times(Path(scratch)):
            print(f"in-process check, {times:2d}x reference    {ms:8.1f} ms   ({ms / times:6.1f} ms per copy; "
                  f"{count} findings)")
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(NEWSLETTER), "build", str(REFERENCE), "--out", out]
        process_ms = _median_ms(lambda: subprocess.run(cmd, check=True, capture_output=True), 7)
    print(f"`newsletter build` process, med. 7  {process_ms:8.1f} ms   (target <= 500 ms)")
    with tempfile.TemporaryDirectory() as scratch:
        found = mjml_cli(Path(scratch), rendered.mjml)
        if isinstance(found, str):
            print(f"`mjml` CLI (node)                   skipped: {found}")
        else:
            cli, source = found
            target = Path(scratch) / "out.html"
            mjml_cmd = [str(cli), str(source), "-o", str(target)]
            mjml_ms = _median_ms(lambda: subprocess.run(mjml_cmd, check=True, capture_output=True), 7)
            print(f"`mjml` CLI (node) MJML only, med. 7 {mjml_ms:8.1f} ms   "
                  f"(`newsletter build` takes {process_ms / mjml_ms:.2f}x as long, and also validates, "
                  "renders the templates and inlines CSS)")
    help_ms = _median_ms(lambda: subprocess.run([str(NEWSLETTER), "--help"], check=True, capture_output=True), 5)
    print(f"`newsletter --help`, median of 5    {help_ms:8.1f} ms")


if __name__ == "__main__":
    main()
