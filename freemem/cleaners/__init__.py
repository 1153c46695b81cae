"""Cleaners: who proposes deletions.

* :class:`HeuristicCleaner` — deterministic, CPU only, the default.
* :class:`FreeModuleCleaner` — the Free-Module LoRA over OpenAI-compatible HTTP (SGLang, vLLM, llama.cpp).
* :class:`PromptedCleaner` — the same protocol by instructions to any LangChain chat model.

The HTTP cleaners are imported on first use, so importing freemem never pulls the ``openai`` client in.
The contract they implement, :class:`~freemem.Cleaner` and :class:`~freemem.Proposal`, is the core's
(:mod:`freemem.core.cleaner`), imported from :mod:`freemem`.
"""

from __future__ import annotations

import importlib
from typing import Any

from freemem.cleaners.heuristic import HeuristicCleaner

_LAZY = {"FreeModuleCleaner": "free_module", "Endpoint": "http", "CircuitBreaker": "http",
         "PromptedCleaner": "prompted"}

__all__ = ["HeuristicCleaner", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freemem.cleaners' has no attribute {name!r}")
    return getattr(importlib.import_module(f"freemem.cleaners.{module}"), name)
