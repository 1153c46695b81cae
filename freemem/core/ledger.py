"""Ledger events: one JSON-plain record per cleaning round.

Events live in graph state (summaries, no removed text) and in the archive (with the removed spans, so a
thread can be shown, audited and restored).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from freemem.core.folding import FoldRecord
from freemem.core.outcome import AppliedSpan, Outcome

if TYPE_CHECKING:
    from freemem.core.cleaner import Proposal
    from freemem.core.context import Context
    from freemem.tokens import TokenCounter

__all__ = ["RAW_ANSWER_CHARS", "RAW_STATE_CHARS", "CleanEvent"]

#: How much of a model cleaner's raw answer an event keeps (the rest is cut, with a note of how much): in the
#: event and in the archive (``to_dict(spans=True)``) ...
RAW_ANSWER_CHARS = 4000
#: ... and in the summary that graph state carries (``to_dict()``), which is written at every step.
RAW_STATE_CHARS = 500


def _bounded(text: str | None, limit: int = RAW_ANSWER_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more chars cut]"


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
    #: Commands the cleaner proposed, and how many of them were applied (a command counts once even when its
    #: span merged with another's); ``applied`` counts the removed spans. Over every round of the event.
    proposed: int = 0
    applied_commands: int = 0
    #: The cleaner's raw answer in the last round that had one (bounded: :data:`RAW_ANSWER_CHARS`).
    raw: str | None = None
    #: The removed spans, one list per round (a later round's offsets refer to the earlier round's output).
    rounds: list[list[AppliedSpan]] = field(default_factory=list)
    #: Folds made after the rounds (whole messages replaced by one fold message), oldest first.
    folds: list[FoldRecord] = field(default_factory=list)
    #: What the round cost under the prompt cache (cost-aware scheduling, :mod:`freemem.core.prompt_cache`):
    #: ``price``, ``decision`` (applied / deferred / none), ``forced``, ``cold``, ``first_change`` (index of the
    #: first changed message), ``prefix_tokens`` (tokens before it: still cached), ``rewrite_tokens`` (tokens
    #: after it: written again), ``cost`` (input-token units more than not cleaning; negative when it saves).
    #: Empty when the memory does not schedule by cost.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_freed(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def applied_share(self) -> float | None:
        """Share of the proposed commands that were applied (None when none was proposed)."""
        return self.applied_commands / self.proposed if self.proposed else None

    def add_proposal(self, proposal: Proposal) -> None:
        """Count one round's proposed commands and keep its raw answer (bounded)."""
        self.proposed += len(proposal.commands)
        if proposal.raw is not None:
            self.raw = _bounded(proposal.raw)

    def note_unreachable_budget(self, context: Context, budget: int, counter: TokenCounter, *,
                                fixed: int = 0) -> None:
        """Add a note when the protected text of ``context`` alone is over ``budget`` (the messages' budget,
        after ``fixed`` tokens of system prompt and tool schemas): then no cleaner can meet it, and the fix is
        the protection, the prompt and tools, or the budget, not the cleaner."""
        text = context.text
        protected = sum(counter.count(text[r.start:r.end]) for r in context.regions if not r.editable)
        if protected <= budget:
            return
        reasons: dict[str, int] = {}
        for r in context.regions:
            if not r.editable:
                key = r.reason or r.kind
                reasons[key] = reasons.get(key, 0) + r.end - r.start
        top = ", ".join(k for k, _ in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        if fixed:
            note = (f"system prompt and tool schemas ({fixed:,} tokens) plus protected messages (about "
                    f"{protected:,} tokens) pass the budget of {budget + fixed:,}: no cleaner can meet it (mostly: "
                    f"{top}); shorten the prompt or the tools, loosen Protection or raise the budget")
        else:
            note = (f"protected text alone is about {protected:,} tokens, over the budget of {budget:,}: no "
                    f"cleaner can meet it (mostly: {top}); loosen Protection or raise the budget")
        self.note = f"{self.note}; {note}" if self.note else note

    def add_outcome(self, outcome: Outcome, *, kept: Sequence[AppliedSpan] | None = None) -> None:
        """Fold one round's outcome into the event (several rounds may make one event). ``kept``: the spans of
        the outcome that the clean keeps (a round scheduled by its cache cost may keep only the later edits, or
        none); None: all of them."""
        spans = list(outcome.applied if kept is None else kept)
        self.applied += len(spans)
        self.applied_commands += len({i for span in outcome.applied for i in span.command_indexes})
        if spans:
            self.rounds.append(spans)
        self.refused = outcome.refused or self.refused
        self.rejected.extend(r.to_dict(brief=True) for r in outcome.rejected)

    def to_dict(self, *, spans: bool = False) -> dict[str, Any]:
        """JSON-plain dict; ``spans=True`` includes the removed text and the whole (bounded) raw answer (for the
        archive, not for state, which gets the raw answer's first :data:`RAW_STATE_CHARS`)."""
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
            "proposed": self.proposed,
            "applied_commands": self.applied_commands,
            "raw": self.raw if spans else _bounded(self.raw, RAW_STATE_CHARS),
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
