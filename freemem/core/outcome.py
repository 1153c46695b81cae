"""What one :func:`~freemem.core.apply.apply_commands` call did: the spans removed (:class:`AppliedSpan`, enough to
restore each exactly), the commands not applied and why (:class:`Rejection`), and the :class:`Outcome` that
holds them with the edited fields. Plain data, JSON-round-trippable; nothing here edits text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from freemem.core.commands import Command
from freemem.core.context import Context
from freemem.core.edits import ArgPiece, edit_messages
from freemem.core.errors import ConfigError

__all__ = ["AppliedSpan", "Outcome", "RejectReason", "Rejection"]

RejectReason = Literal[
    "empty_prefix",
    "prefix_not_found",
    "ambiguous_prefix",
    "suffix_not_found",
    "protected",
    "round_refused",
    "duplicate",
    "over_cap",
    "deadline",
    "too_many_matches",
    "frees_nothing",
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command that was not applied, and why."""

    command_index: int
    command: Command
    reason: RejectReason
    detail: str = ""

    def to_dict(self, *, brief: bool = False) -> dict[str, Any]:
        """JSON-plain; ``brief`` cuts the anchors to 80 characters (for ledgers)."""
        n = 80 if brief else None
        return {"command_index": self.command_index, "prefix": self.command.prefix[:n],
                "suffix": self.command.suffix[:n], "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AppliedSpan:
    """One removed piece: its original text, where it was, and the marker that replaced it.

    ``start``/``end`` are offsets in the original :attr:`Context.text`; ``field_start`` is the offset in the
    original text of its field (a message's ``content``, ``content[i]``, ``reasoning_content``; ``"text"``
    for plain text) and ``pruned_start`` the marker's offset in the pruned field. With those the original is
    rebuilt exactly (:func:`freemem.core.archive.restore_text` / :func:`~freemem.core.archive.restore_messages`).
    """

    command_indexes: tuple[int, ...]
    start: int
    end: int
    original: str
    marker: str
    tokens: int
    field: str
    field_start: int
    pruned_start: int
    message_index: int | None = None
    message_id: str | None = None
    #: For a tool-call argument string: ``original`` as it was *encoded* in the arguments JSON (escapes such
    #: as ``\\u00E9`` or ``\\/`` as written), so restoring gives back the arguments byte for byte. None for
    #: text fields, and in events archived before it existed (those restore JSON-equal).
    raw_original: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["command_indexes"] = list(self.command_indexes)
        if d["raw_original"] is None:
            del d["raw_original"]  # text fields: the archived form stays what it was
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppliedSpan:
        data = dict(data)
        data["command_indexes"] = tuple(data.get("command_indexes", ()))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Outcome:
    """The result of :func:`apply_commands`."""

    context: Context
    text: str
    applied: list[AppliedSpan] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: Why the whole round was refused (then nothing is applied), else None.
    refused: str | None = None
    #: ``(message_index, field) -> new field text`` for messages; ``(None, "text")`` for plain text.
    field_edits: dict[tuple[int | None, str], str] = field(default_factory=dict)
    #: For argument-string fields: the replaced ranges (see :data:`ArgPieces`), so the write-back touches
    #: only those bytes of the arguments JSON.
    arg_pieces: dict[tuple[int | None, str], list[ArgPiece]] = field(default_factory=dict)
    #: ``repeated="all"`` / ``"first"``: for commands that were applied, the matches left out (touching
    #: protected text, or no longer than their marker), one entry per command with the counts in ``detail``.
    #: Those commands are not in :attr:`rejected`.
    skipped: list[Rejection] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    @property
    def tokens_removed(self) -> int:
        """Tokens of original text taken out (markers not subtracted)."""
        return sum(s.tokens for s in self.applied)

    @property
    def chars_freed(self) -> int:
        return sum(len(s.original) - len(s.marker) for s in self.applied)

    @property
    def messages(self) -> list[Any]:
        """The pruned messages: edited ones are copies, the rest the same objects. Ids never change."""
        if self.context.kind != "messages" or self.context.messages is None:
            raise ConfigError("this outcome is for plain text: use .text")
        return edit_messages(self.context.messages, self.field_edits, arg_pieces=self.arg_pieces)

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        return {"applied": len(self.applied), "rejected": len(self.rejected), "rejected_by_reason": reasons,
                "skipped": len(self.skipped), "refused": self.refused, "tokens_removed": self.tokens_removed,
                "chars_freed": self.chars_freed}
