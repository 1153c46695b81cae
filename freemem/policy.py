"""The memory-policy protocol: what every LangGraph surface needs of a memory, whichever policy it is.

``FreeMemoryMiddleware``, ``wrap``, ``free_node`` and ``pre_model_hook`` take any object with these members:
:class:`freemem.FreeMemory` (free: delete spans, fold whole units) and
:class:`freemem.policies.SummarizeMemory` (summarize: InftyThink's fold with a summary, on transcripts) both
implement it, so either plugs into ``create_agent`` the same way::

    FreeMemoryMiddleware(FreeMemory(budget=16_000))
    FreeMemoryMiddleware(SummarizeMemory(chat_model, budget=16_000))

A round's :class:`~freemem.memory.CleanResult` carries its edits in ``event`` (spans in ``rounds``, whole
messages in ``folds``), so the surfaces persist and archive every policy's rounds the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from freemem.memory import CleanResult

__all__ = ["MemoryPolicy"]


@runtime_checkable
class MemoryPolicy(Protocol):
    """count / check / clean / aclean, and an optional ``archive`` (None: nothing is recorded).

    ``idle_s`` (on :meth:`check`, :meth:`clean` and :meth:`aclean`) is the seconds since the conversation's
    last model call, None when unknown: the surfaces pass it on every step, and a policy that does not
    schedule by prompt-cache cost ignores it. A policy that does declares its cache's TTL in ``cache_ttl_s``
    (an optional attribute; the surfaces then measure the gap)."""

    archive: Any

    def count(self, messages: Sequence[Any]) -> int:
        """Tokens of a message list as the budget counts them."""
        ...

    def check(self, tokens: int, tokens_at_last_clean: int, newest_text: str = "", *,
              idle_s: float | None = None) -> str | None:
        """The reason to run a round now, or None."""
        ...

    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
              idle_s: float | None = None) -> CleanResult:
        """One round on ``messages``: never raises for a failing cleaner (the event says what happened)."""
        ...

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
                     idle_s: float | None = None) -> CleanResult:
        """Async twin of :meth:`clean`."""
        ...
