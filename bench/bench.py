"""`make bench`: figures for the build (issue 2). Prints; asserts nothing.

- in-process build of the reference issue (load + validate + render), median of 20, after one warm-up;
- the whole `newsletter build` process, median of 5;
- `newsletter --help` start-up, median of 5.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "issues" / "2020-12.yaml"
NEWSLETTER = Path(sys.executable).parent / "newsletter"


def _median_ms(run, times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    from components import load_issue, render_issue
    from components.lint import check_issue

    render_issue(REFERENCE)  # warm-up: template compilation, imports
    build_ms = _median_ms(lambda: render_issue(load_issue(REFERENCE)), 20)
    check_ms = _median_ms(lambda: check_issue(load_issue(REFERENCE)), 5)
    size_kb = len(render_issue(REFERENCE).html.encode()) / 1024
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(NEWSLETTER), "build", str(REFERENCE), "--out", out]
        process_ms = _median_ms(lambda: subprocess.run(cmd, check=True, capture_output=True), 5)
    help_ms = _median_ms(lambda: subprocess.run([str(NEWSLETTER), "--help"], check=True, capture_output=True), 5)
    print(f"reference issue HTML size           {size_kb:8.1f} KB   (Gmail clips past 102 KB)")
    print(f"in-process build, median of 20      {build_ms:8.1f} ms   (target <= 50 ms)")
    print(f"in-process check, median of 5       {check_ms:8.1f} ms")
    print(f"`newsletter build` process, med. 5  {process_ms:8.1f} ms   (target <= 500 ms)")
    print(f"`newsletter --help`, median of 5    {help_ms:8.1f} ms")


if __name__ == "__main__":
    main()
