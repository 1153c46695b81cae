"""The layers, checked over the source: what import-linter (``lint-imports``, contracts in pyproject.toml)
cannot express.

* No module imports another module's private (``_x``) names: not ``from freemem.m import _x``, not
  ``freemem.m._x`` through an imported module. A module's private names are its own.
* A private module (``freemem.pkg._m``) is imported only from inside its package ``freemem.pkg``.

The import-graph contracts themselves (the core and ``freemem.tokens`` import no LangGraph, LangChain, Redis
or HTTP client; cleaners and policies import no LangGraph) run as ``lint-imports`` from ``scripts/lint``; the
last test here runs them too, so ``scripts/test`` alone also catches a broken layer.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "freemem"


def _modules() -> dict[str, Path]:
    """Every module of the library and of the benchmarks (``bench/freemem_bench``), by its dotted name."""
    out: dict[str, Path] = {}
    for base in (ROOT, ROOT / "bench"):
        for path in sorted((base / ("freemem" if base == ROOT else "freemem_bench")).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()
#: The top-level packages whose private names the checks guard.
OURS = ("freemem", "freemem_bench")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _violations(module: str, path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _package_of(module, path)
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> the freemem (or freemem_bench) module it is bound to

    def private_module(target: str, lineno: int) -> None:
        parts = target.split(".")
        for i, part in enumerate(parts):
            if _private(part):
                owner = ".".join(parts[:i])
                if not (here == owner or here.startswith(owner + ".")):
                    found.append(f"{path.relative_to(root)}:{lineno}: imports the private module {target}")
                return

    for node in ast.walk(tree):
        absolute = isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if absolute and node.module.split(".")[0] in OURS:  # type: ignore[union-attr]
            private_module(node.module, node.lineno)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    private_module(full, node.lineno)
                    bound[alias.asname or alias.name] = full
                elif _private(alias.name) and node.module != module:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: imports {node.module}.{alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"{path.relative_to(root)}:{node.lineno}: a relative import (use the absolute name)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in OURS:
                    private_module(alias.name, node.lineno)
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[top] = top
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain: list[str] = []
            value: ast.expr = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                target = ".".join([bound[value.id], *reversed(chain)])
                if target in MODULES and target != module:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: uses {target}.{node.attr}")
    return found


def test_the_checker_sees_private_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from freemem.core.apply import _Finder\nimport freemem.core.context as ctx\nctx._LcViewCache\n"
        "from freemem.langgraph._core import CleanStep\n"
    )
    found = _violations("freemem.cli.bad", bad, root=tmp_path)
    assert len(found) == 3, found
    assert any("_Finder" in f for f in found) and any("_LcViewCache" in f for f in found)
    assert any("private module freemem.langgraph._core" in f for f in found)


def test_no_module_imports_another_modules_private_names() -> None:
    found = [v for module, path in MODULES.items() for v in _violations(module, path)]
    assert not found, "\n".join(found)


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
