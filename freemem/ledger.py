"""Ledger events: one JSON-plain record per cleaning round.

Events live in graph state (summaries, no removed text) and in the archive (with the removed spans, so a
thread can be shown, audited and restored).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from freemem.apply import AppliedSpan, Outcome
from freemem.folding import FoldRecord

__all__ = ["CleanEvent"]


@dataclass
class CleanEvent:
    """What one cleaning round did."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    created_at: float = field(default_factory=time.time)
    trigger: str = "manual"
    cleaner: str = ""
    tokens_before: int = 0
    tokens_after: int = 0
    applied: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    refused: str | None = None
    error: str | None = None
    note: str | None = None
    latency_s: float = 0.0  # the whole round
    cleaner_latency_s: float = 0.0  # the cleaner's share (model time for model cleaners)
    usage: dict[str, int] = field(default_factory=dict)
    #: The removed spans, one list per round (a later round's offsets refer to the earlier round's output).
    rounds: list[list[AppliedSpan]] = field(default_factory=list)
    #: Folds made after the rounds (whole messages replaced by one fold message), oldest first.
    folds: list[FoldRecord] = field(default_factory=list)
    #: What the round cost under the prompt cache (cost-aware scheduling, :mod:`freemem.prompt_cache`):
    #: ``price``, ``decision`` (applied / deferred / none), ``forced``, ``cold``, ``first_change`` (index of the
    #: first changed message), ``prefix_tokens`` (tokens before it: still cached), ``rewrite_tokens`` (tokens
    #: after it: written again), ``cost`` (input-token units more than not cleaning; negative when it saves).
    #: Empty when the memory does not schedule by cost.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_freed(self) -> int:
        return self.tokens_before - self.tokens_after

    def add_outcome(self, outcome: Outcome) -> None:
        """Fold one round's outcome into the event (several rounds may make one event)."""
        self.applied += len(outcome.applied)
        if outcome.applied:
            self.rounds.append(list(outcome.applied))
        self.refused = outcome.refused or self.refused
        self.rejected.extend(r.to_dict(brief=True) for r in outcome.rejected)

    def to_dict(self, *, spans: bool = False) -> dict[str, Any]:
        """JSON-plain dict; ``spans=True`` includes the removed text (for the archive, not for state)."""
        d: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "trigger": self.trigger,
            "cleaner": self.cleaner,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "tokens_freed": self.tokens_freed,
            "applied": self.applied,
            "rejected": self.rejected,
            "refused": self.refused,
            "error": self.error,
            "note": self.note,
            "latency_s": round(self.latency_s, 6),
            "cleaner_latency_s": round(self.cleaner_latency_s, 6),
            "usage": dict(self.usage),
        }
        if self.cache:
            d["cache"] = dict(self.cache)
        if self.folds:
            d["folds"] = [f.to_dict(full=spans) for f in self.folds]
        if spans:
            d["rounds"] = [[s.to_dict() for s in spans_] for spans_ in self.rounds]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanEvent:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("rounds", "folds")}
        event = cls(**known)
        event.rounds = [[AppliedSpan.from_dict(s) for s in r] for r in data.get("rounds", [])]
        event.folds = [FoldRecord.from_dict(f) for f in data.get("folds", []) if "messages" in f]
        return event
