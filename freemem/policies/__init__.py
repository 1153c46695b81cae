"""Memory policies: when to clean (:mod:`~freemem.policies.triggers`) and the two sibling designs of ``free``.

* ``summarize`` (InftyThink): :class:`InftyThinker` reasons in segments that each end with a summary;
  :class:`SummarizeMemory` folds older turns of a transcript into one summary message.
* ``gated`` (GRU-Mem): :class:`GatedReader` reads a long input chunk by chunk into a bounded memory with an
  update gate and an exit gate.

The policy classes are imported on first use (``from freemem.policies import GatedReader``), so importing
freemem costs nothing for them.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "InftyThinker": "summarize", "SummarizeMemory": "summarize", "ThinkResult": "summarize",
    "FoldResult": "summarize", "parse_segment": "summarize",
    "GatedReader": "gated", "ReadResult": "gated", "parse_gated_step": "gated", "split_chunks": "gated",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freemem.policies' has no attribute {name!r}")
    return getattr(importlib.import_module(f"freemem.policies.{module}"), name)
