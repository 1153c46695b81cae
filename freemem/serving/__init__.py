"""Serving the Free-Module: the ``freemem serve`` launcher.

``freemem.serving.launch`` builds and runs the server commands (SGLang, vLLM, llama.cpp); the client side,
:class:`~freemem.cleaners.FreeModuleCleaner`, talks to them over OpenAI-compatible HTTP and is imported from
:mod:`freemem.cleaners` (one import path per name).
``freemem.serving.profile`` measures a cleaning round's latency split against a running server.
Names are imported lazily, so ``python -m freemem.serving.launch`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdapterSpec": "freemem.serving.launch",
    "LaunchPlan": "freemem.serving.launch",
    "ServeSpec": "freemem.serving.launch",
    "build_plan": "freemem.serving.launch",
    "wait_for_health": "freemem.serving.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
