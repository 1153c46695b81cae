"""Optional dependencies: what each extra of the ``freemem`` distribution brings, checked before use.

``pip install freemem`` installs the core and the heuristic cleaner only. The integrations need an extra:
``freemem[langgraph]`` (LangGraph, LangChain, the SQLite checkpointer: :mod:`freemem.langgraph`, the demo),
``freemem[redis]`` (:mod:`freemem.redis`, which also needs the LangGraph extra), ``freemem[serve]`` (the
OpenAI client for the Free-Module cleaner), ``freemem[all]``. A layer calls :func:`require_extra` before it
imports them, so a missing package is one clear :class:`~freemem.MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib.util

from freemem.core.errors import MissingExtraError

__all__ = ["require_extra"]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a broken install
        return False


def require_extra(extra: str, *modules: str, what: str | None = None) -> None:
    """Raise :class:`~freemem.MissingExtraError` unless every one of ``modules`` can be imported.

    Args:
        extra: the extra that installs them (``"redis"`` -> ``pip install 'freemem[redis]'``).
        modules: top-level or dotted module names (``"langgraph.checkpoint.sqlite"``).
        what: what needs them, for the message (default: ``freemem[<extra>]``).
    """
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise MissingExtraError(
            f"{what or f'freemem[{extra}]'} needs {', '.join(missing)}, which is not installed: "
            f"pip install 'freemem[{extra}]'"
        )
