"""``freemem bench NAME``: the benchmarks are a separate distribution, ``freemem-bench`` (``bench/`` in the
repository), kept out of the library. Each benchmark is a module ``freemem_bench.NAME`` with
``add_arguments(parser)`` and ``run(args) -> dict``, listed in ``freemem_bench.BENCHMARKS``; this mounts them and
writes ``--json`` when asked. Without the distribution, ``freemem bench`` says how to install it."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from freemem.io import dumps_json, write_text_atomic

__all__ = ["INSTALL_HINT", "add_arguments", "benchmarks", "run"]

#: How to get the benchmarks: they read the repository's data and are not part of the library's wheel.
INSTALL_HINT = ("the benchmarks are a separate distribution: from a clone of the freemem repository, "
                "pip install -e ./bench (scripts/setup does)")


def benchmarks() -> dict[str, str] | None:
    """The benchmarks' names and one-line descriptions, or None when ``freemem-bench`` is not installed."""
    try:
        package = importlib.import_module("freemem_bench")
    except ModuleNotFoundError as exc:
        if exc.name == "freemem_bench":
            return None
        raise
    return dict(package.BENCHMARKS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    found = benchmarks()
    if found is None:
        p.description = f"freemem bench: {INSTALL_HINT}."
        p.set_defaults(_missing=True)
        return
    sub = p.add_subparsers(dest="bench", metavar="NAME")
    for name, help_text in found.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"freemem_bench.{name}")
        module.add_arguments(sp)
        sp.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    from freemem.core.errors import ConfigError

    if getattr(args, "_missing", False):
        raise ConfigError(f"freemem bench: {INSTALL_HINT}")
    module = getattr(args, "_bench", None)
    if module is None:
        raise ConfigError(f"name a benchmark: {', '.join(benchmarks() or {})}")
    result: Any = module.run(args)
    out = getattr(args, "json", None)
    if out and isinstance(result, dict) and not getattr(args, "_json_written", False):
        write_text_atomic(out, dumps_json(result, default=str) + "\n")
    return 0
