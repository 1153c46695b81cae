"""A message list as one clean reads it: the messages, their views and their tokens, built once.

A clean measures, renders, edits, folds and prices the same messages several times; a :class:`Snapshot` reads
each message into a :class:`~freemem.core.views.MessageView` and counts it once, and an edit or a fold makes
the next snapshot by reading only the messages that are new (:meth:`Snapshot.after`): freemem edits by making
new message objects, so a message object seen before keeps its view and its tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from freemem.core.views import MessageView, message_view, message_views, name_tool_results

__all__ = ["Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """``messages`` with their ``views`` and ``tokens`` (per message, as ``measure`` counts a view: its sum is
    the list's count). Read-only: the views are shared with the snapshots made from this one."""

    messages: tuple[Any, ...]
    views: tuple[MessageView, ...]
    tokens: tuple[int, ...]
    measure: Callable[[MessageView], int]

    @classmethod
    def read(cls, messages: Sequence[Any], measure: Callable[[MessageView], int]) -> Snapshot:
        """Read every message of ``messages`` and count it with ``measure``."""
        views = message_views(messages)
        return cls(tuple(messages), tuple(views), tuple(measure(v) for v in views), measure)

    @property
    def total(self) -> int:
        """The tokens of the whole list."""
        return sum(self.tokens)

    def __len__(self) -> int:
        return len(self.messages)

    def after(self, messages: Sequence[Any]) -> Snapshot:
        """The snapshot of ``messages``, an edit or a fold of this one's: a message object this snapshot holds
        keeps its view (re-indexed where it moved) and its tokens; the others are read and counted."""
        if len(messages) == len(self.messages) and all(a is b for a, b in zip(messages, self.messages)):
            return self
        known = {id(m): i for i, m in enumerate(self.messages)}
        views: list[MessageView] = []
        tokens: list[int | None] = []
        for i, msg in enumerate(messages):
            k = known.get(id(msg))
            if k is not None and self.messages[k] is msg:
                view = self.views[k]
                views.append(view if view.index == i else dataclasses.replace(view, index=i))
                tokens.append(self.tokens[k])
            else:
                views.append(message_view(i, msg))
                tokens.append(None)
        name_tool_results(views)  # names only the tool results still unnamed: the new ones
        counted = tuple(self.measure(v) if t is None else t for v, t in zip(views, tokens))
        return Snapshot(tuple(messages), tuple(views), counted, self.measure)

    def mixed(self, other: Snapshot, start: int) -> Snapshot:
        """This snapshot's messages before ``start`` and ``other``'s from ``start`` on (two snapshots of the
        same positions: the edits of ``other`` from message ``start`` on)."""
        if start <= 0:
            return other
        n = len(self.messages)
        return Snapshot(self.messages[:start] + other.messages[start:n], self.views[:start] + other.views[start:n],
                        self.tokens[:start] + other.tokens[start:n], self.measure)
