"""The manual's API reference covers every public name: docs/reference/*.md are written from ``__all__`` by
scripts/docs_reference.py, and every public class and function has a docstring to show there.

(``mkdocs build --strict`` itself runs in scripts/lint, which CI runs before the tests.)
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("freemem", "freemem.langgraph")


def test_reference_pages_are_up_to_date() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_reference.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_reference(package: str) -> None:
    stem = "freemem" if package == "freemem" else package.rsplit(".", 1)[1]
    page = (ROOT / "docs" / "reference" / f"{stem}.md").read_text()
    names = importlib.import_module(package).__all__
    missing = [n for n in names if f'heading: "{package}.{n}"' not in page]
    assert not missing, f"not in docs/reference/{stem}.md: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_class_and_function_has_a_docstring(package: str) -> None:
    module = importlib.import_module(package)
    bare = [n for n in module.__all__
            if (inspect.isclass(obj := getattr(module, n)) or inspect.isfunction(obj))
            and not (obj.__doc__ or "").strip()]
    assert not bare, f"public names without a docstring: {bare}"
