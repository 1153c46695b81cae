"""Serving the Free-Module: the ``freemem serve`` launcher.

``freemem serve`` (:mod:`~freemem.serving.launch`) builds (:mod:`~freemem.serving.commands`, from a
:mod:`~freemem.serving.specs` spec) and runs (:mod:`~freemem.serving.process`) the server commands (SGLang,
vLLM, llama.cpp);
:class:`~freemem.cleaners.free_module.FreeModuleCleaner` talks to them over OpenAI-compatible HTTP.
``freemem.serving.profile`` measures a cleaning round's latency split against a running server.
Names are imported lazily, so ``python -m freemem.serving.launch`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdapterSpec": "freemem.serving.specs",
    "LaunchPlan": "freemem.serving.specs",
    "ServeSpec": "freemem.serving.specs",
    "build_plan": "freemem.serving.commands",
    "wait_for_health": "freemem.serving.process",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
