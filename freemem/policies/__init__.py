"""Memory policies: the sibling designs of ``free`` (when to clean is :mod:`freemem.engine.triggers`).

* ``summarize`` for transcripts: :class:`SummarizeMemory` folds older turns into one summary message.
* ``summarize`` for reasoning (InftyThink, :mod:`~freemem.policies.inftythink`): segments that each end with a
  summary; its graph is ``freemem.langgraph.InftyThinker``.
* ``gated`` (GRU-Mem, :mod:`~freemem.policies.gated`): read a long input chunk by chunk into a bounded memory
  with an update gate and an exit gate; its graph and tool are ``freemem.langgraph.GatedReader``.
* the Free()LM reasoning loop's steps (:mod:`~freemem.policies.reasoner`); its graph is
  ``freemem.langgraph.FreeReasoner``.
* :mod:`~freemem.policies.calls`: the model calls every policy makes and their metrics.

No LangGraph here: each step is written once as a generator (:mod:`freemem.driving`), and the graphs in
:mod:`freemem.langgraph` drive them. The names below are imported on first use, so importing freemem costs
nothing for them.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SummarizeMemory": "summarize", "FoldResult": "summarize",
    "InftyThinkerSteps": "inftythink", "ThinkResult": "inftythink", "parse_segment": "inftythink",
    "GatedReaderSteps": "gated", "ReadResult": "gated", "parse_gated_step": "gated", "split_chunks": "gated",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freemem.policies' has no attribute {name!r}")
    return getattr(importlib.import_module(f"freemem.policies.{module}"), name)
