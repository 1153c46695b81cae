"""What a long session is: its head, its steps of new messages, and MemoryBank's probing questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Probe", "Session"]


@dataclass
class Probe:
    """A question about an earlier fact, and the strings that carry the fact."""

    user: str
    question: str
    evidence_date: str | None
    evidence: str
    keys: list[str]
    #: "names" (quoted phrases, capitalised names) or "rare words" (the fallback, a weaker signal).
    key_kind: str = "names"
    #: Ids of the messages that hold the fact (the answering turn's user and assistant messages), when known.
    evidence_ids: list[str] = field(default_factory=list)


@dataclass
class Session:
    """A long session: the messages before the first model call, then what each step appends."""

    name: str
    head: list[Any]
    steps: list[list[Any]]
    note: str = ""
    probes: list[Probe] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.head) + sum(len(s) for s in self.steps)
