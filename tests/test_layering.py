"""Dependencies point one way: newsletter -> mailer -> components, subscribers (design §2)."""
from __future__ import annotations

import ast

import pytest

from .conftest import ROOT

ALLOWED = {
    "components": set(),
    "subscribers": set(),
    "mailer": {"components", "subscribers"},
    "newsletter": {"mailer", "components", "subscribers"},
}
# Only these modules may import boto3 (design §11.5).
BOTO3_ALLOWED = {"mailer/ses.py", "mailer/sqs.py"}


def _imports(path):
    tree = ast.parse(path.read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_lies_below_it(package):
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            if name in ALLOWED and name != package and name not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
            if name in ("boto3", "botocore") and str(path.relative_to(ROOT)) not in BOTO3_ALLOWED:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_the_checker_sees_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import mailer.ses\nfrom newsletter import cli\nfrom . import sibling\n")
    assert list(_imports(sample)) == ["mailer", "newsletter"]


def test_cli_starts_without_heavy_imports():
    # `newsletter --help` must stay fast: no MJML, premailer, boto3 or web stack at import.
    import subprocess
    import sys
    code = ("import sys, newsletter.cli; heavy = {'mjml','premailer','boto3','sqlalchemy','starlette',"
            "'uvicorn','playwright'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
