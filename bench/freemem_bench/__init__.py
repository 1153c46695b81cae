"""Benchmarks behind ``freemem bench NAME`` (the ``freemem-bench`` distribution: ``pip install -e ./bench``).

Each module ``freemem_bench.NAME`` exposes ``add_arguments(parser)`` and ``run(args) -> dict`` and is listed in
:data:`BENCHMARKS`; the dispatcher in :mod:`freemem.cli.bench` mounts them. Shared loaders, tables, JSON/PNG
output and timing live in :mod:`freemem_bench._common`. Benchmarks read local data only and never download
anything.
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

#: Every benchmark, by the name ``freemem bench NAME`` takes, with its one-line description.
BENCHMARKS: dict[str, str] = {
    "transcripts": "what pruning keeps and frees on recorded tool-use trajectories",
    "reasoning": "loops and important steps in long chains of thought",
    "store": "checkpointer throughput, latency and bytes per thread",
    "overhead": "per-turn middleware cost at 8k/32k/128k-token contexts",
    "gated": "gated memory (GRU-Mem) calls and peak context on HotpotQA with an oracle agent",
    "core": "the core's own costs: apply 50 commands and count a new message on a 128k-token context",
    "long": "bounded at any length: 10,000-call tool sessions and 2,000-turn chats, early vs late step time; "
            "MemoryBank chats: facts kept, reachable with recall(query), answered by a real model",
    "recall": "archive search latency (p50/p95) at 10,000 archived passages: in memory, SQLite FTS5, core Redis",
    "race": "two writers on one thread: what RedisSaver (with and without the lease), SqliteSaver, InMemorySaver keep",
    "inspector": "the inspector's thread page on a 10,000-event thread: cold and warm time and bytes of its pages",
}
