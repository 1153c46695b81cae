"""Write the API reference pages of the manual (docs/reference/*.md) from the packages' ``__all__``.

Each public name gets a mkdocstrings block pointing at the module that defines it (a name re-exported lazily,
through a module ``__getattr__``, cannot be found by griffe at its re-export), grouped by the module it comes
from. ``python scripts/docs_reference.py --check`` exits 1 when the pages on disk differ from what it would
write (tests/test_docs.py runs it), so a name added to ``__all__`` cannot go undocumented.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "freemem": ("freemem", "The core package: the engine, cleaners, commands, archives, counters and errors."),
    "langgraph": ("freemem.langgraph", "The LangGraph surfaces: middleware, wrap, free_node, recall, threads."),
}


def _target(package: str, name: str) -> str:
    """Where griffe finds ``package.name``: the defining module for classes and functions."""
    obj = getattr(importlib.import_module(package), name)
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and module.startswith("freemem") and (isinstance(obj, type) or callable(obj)):
        return f"{module}.{getattr(obj, '__name__', name)}"
    return f"{package}.{name}"


def page(package: str, intro: str) -> str:
    names = sorted(importlib.import_module(package).__all__, key=str.lower)
    lines = [f"# `{package}`", "", intro, "",
             "<!-- Written by scripts/docs_reference.py from the package's __all__; do not edit by hand. -->", ""]
    for name in names:
        lines += [f"::: {_target(package, name)}", "    options:", f"      heading: \"{package}.{name}\"",
                  "      heading_level: 2", "      show_root_full_path: false", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a page is out of date (write nothing)")
    args = ap.parse_args(argv)
    stale = []
    for stem, (package, intro) in PAGES.items():
        path = ROOT / "docs" / "reference" / f"{stem}.md"
        text = page(package, intro)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print("out of date (run python scripts/docs_reference.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
