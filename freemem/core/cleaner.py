"""The cleaner protocol: look at a :class:`~freemem.Context`, propose deletion commands.

Cleaners only *propose*; :func:`freemem.apply_commands` decides what is safe. A cleaner that cannot answer
raises :class:`~freemem.core.errors.CleanerError`; callers skip the round (fail open for the agent, closed for
the edit).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from freemem.core.apply import DEFAULT_MAX_COMMANDS

if TYPE_CHECKING:
    from freemem.core.apply import RepeatedMode
    from freemem.core.commands import Command
    from freemem.core.context import Context
    from freemem.core.rendering import RenderedContext

__all__ = ["Cleaner", "Proposal"]


@dataclass
class Proposal:
    """Commands plus what it cost to get them (for the ledger)."""

    commands: list[Command]
    cleaner: str
    latency_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens, ...
    raw: str | None = None  # the model's raw answer, when there is one
    note: str | None = None  # e.g. a parse problem that left no commands
    extra: dict[str, Any] = field(default_factory=dict)
    #: What the model was shown, when it was not the context's own text (protected parts marked, arguments
    #: decoded): the commands' anchors are located in it (``apply_commands(..., shown=...)``).
    shown: RenderedContext | None = None


class Cleaner(ABC):
    """Base class of cleaners. Subclasses implement :meth:`propose` and, when they do I/O, :meth:`apropose`.

    The class attributes below are what :class:`freemem.FreeMemory` reads of a cleaner; a subclass overrides
    the ones it needs."""

    #: Short name recorded in ledger events.
    name: str = "cleaner"
    #: The most distinct commands one call may have applied (``apply_commands(..., max_commands=...)``); None:
    #: no cap (a rule cleaner whose commands are verified, one per span it chose).
    max_commands: int | None = DEFAULT_MAX_COMMANDS  # a bound on untrusted model output
    #: The cleaner computes in the caller's process and returns promptly (no I/O, no model): a round calls
    #: :meth:`propose` / :meth:`apropose` directly, without a worker thread, and the round's deadline does not
    #: apply (a traceback starts at the caller). False (the default) for cleaners that call a model or a
    #: server: their sync calls run in a worker thread so that a hung call can be abandoned.
    in_process: bool = False
    #: Largest share of editable text one round of this cleaner may remove (see ``apply_commands``).
    max_freed_share: float = 0.9
    #: What a prefix that occurs more than once in editable text means when this cleaner's commands are
    #: applied (``apply_commands(..., repeated=...)``): ``"reject"`` (the anchors must name one span: rule
    #: cleaners whose commands are verified), ``"all"`` (every match is removed, the Free()LM paper's
    #: semantics: the model cleaners' default) or ``"first"``.
    repeated: RepeatedMode = "reject"

    @abstractmethod
    def propose(self, context: Context) -> Proposal:
        """Return the commands this cleaner would apply to ``context``."""

    async def apropose(self, context: Context) -> Proposal:
        """Async twin of :meth:`propose`. The default runs :meth:`propose` in a worker thread, or in the
        caller's task for an :attr:`in_process` cleaner."""
        if self.in_process:
            return self.propose(context)
        return await asyncio.to_thread(self.propose, context)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}(name={self.name!r})"
