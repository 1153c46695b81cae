"""``freemem bench NAME``: each benchmark is a module ``freemem.bench.NAME`` with ``add_arguments(parser)`` and
``run(args) -> dict``; this mounts them and writes ``--json`` (and the markdown table) when asked."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from freemem.core.io import dumps_json, write_text_atomic

__all__ = ["BENCHMARKS", "add_arguments", "run"]

BENCHMARKS: dict[str, str] = {
    "transcripts": "what pruning keeps and frees on recorded tool-use trajectories",
    "reasoning": "loops and important steps in long chains of thought",
    "store": "checkpointer throughput, latency and bytes per thread",
    "overhead": "per-turn middleware cost at 8k/32k/128k-token contexts",
    "gated": "gated memory (GRU-Mem) calls and peak context on HotpotQA with an oracle agent",
    "core": "the core's own costs: apply 50 commands and count a new message on a 128k-token context",
    "long": "bounded at any length: 10,000-call tool sessions and 2,000-turn chats, early vs late step time",
    "recall": "archive search latency (p50/p95) at 10,000 archived passages: in memory, SQLite FTS5, core Redis",
    "race": "two writers on one thread: what RedisSaver (with and without the lease), SqliteSaver, InMemorySaver keep",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="NAME")
    for name, help_text in BENCHMARKS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(f"freemem.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("freemem.bench"):
                sp.set_defaults(_missing=name)
                continue
            raise
        module.add_arguments(sp)
        sp.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    from freemem.core.errors import ConfigError

    if getattr(args, "_missing", None):
        raise ConfigError(f"benchmark {args._missing!r} is not available in this build")
    module = getattr(args, "_bench", None)
    if module is None:
        raise ConfigError(f"name a benchmark: {', '.join(BENCHMARKS)}")
    result: Any = module.run(args)
    out = getattr(args, "json", None)
    if out and isinstance(result, dict) and not getattr(args, "_json_written", False):
        write_text_atomic(out, dumps_json(result, default=str) + "\n")
    return 0
