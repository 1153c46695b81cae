"""What ``freemem bench transcripts`` measures retention with: each message as the pieces the model reads (text, tool
names, argument values), an index of every shared substring of the unpruned history (:class:`ReferenceIndex`), and
the strings the next assistant message re-uses from it (:func:`reference_strings`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from freemem.core.views import message_views

__all__ = ["MIN_REFERENCE_CHARS", "PieceCache", "ReferenceIndex", "SEP", "message_pieces", "reference_strings"]

MIN_REFERENCE_CHARS = 8
SEP = "\x00"  # joins message pieces: no shared substring can span two pieces



# ------------------------------------------------------------------------------------ rendering text


def _arg_values(args: str) -> list[str]:
    """The string (and number) values inside a tool call's JSON arguments; the raw text when not JSON."""
    try:
        value = json.loads(args)
    except (json.JSONDecodeError, TypeError):
        return [args] if args else []
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if v:
                out.append(v)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))

    walk(value)
    return out


def message_pieces(message: Any) -> list[str]:
    """What the model reads of one message (OpenAI dict or LangChain message): its text fields and the
    values of its tool-call arguments (decoded from JSON, so a path or a code line reads the same wherever
    it appears)."""
    (view,) = message_views([message])
    pieces = [text for name, text in view.fields if name != "part" and text]
    for _call_id, _name, args in view.tool_calls:
        pieces.extend(_arg_values(args))
    return pieces


class PieceCache:
    """``message_pieces`` per message object (kept alive here, so ``id`` is never reused)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, str]] = {}

    def text(self, message: Any) -> str:
        hit = self._cache.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        text = SEP.join(message_pieces(message))
        self._cache[id(message)] = (message, text)
        return text

    def context_text(self, messages: Iterable[Any]) -> str:
        return SEP.join(self.text(m) for m in messages)


# -------------------------------------------------------------------------------- shared substrings


class ReferenceIndex:
    """A suffix automaton of a growing text, for maximal shared substrings of a query with that text.

    :meth:`extend` appends text (amortised O(1) per character); :meth:`maximal_matches` runs matching
    statistics over the query in O(len(query)).
    """

    __slots__ = ("_last", "_length", "_link", "_next", "chars")

    def __init__(self) -> None:
        self._next: list[dict[str, int]] = [{}]
        self._link: list[int] = [-1]
        self._length: list[int] = [0]
        self._last = 0
        self.chars = 0

    def extend(self, text: str) -> None:
        """Append ``text`` to the indexed text."""
        nxt, link, length = self._next, self._link, self._length
        last = self._last
        for c in text:
            cur = len(length)
            length.append(length[last] + 1)
            link.append(0)
            nxt.append({})
            p = last
            while p != -1 and c not in nxt[p]:
                nxt[p][c] = cur
                p = link[p]
            if p != -1:
                q = nxt[p][c]
                if length[p] + 1 == length[q]:
                    link[cur] = q
                else:
                    clone = len(length)
                    length.append(length[p] + 1)
                    link.append(link[q])
                    nxt.append(dict(nxt[q]))
                    while p != -1 and nxt[p].get(c) == q:
                        nxt[p][c] = clone
                        p = link[p]
                    link[q] = clone
                    link[cur] = clone
            last = cur
        self._last = last
        self.chars += len(text)

    def matching_lengths(self, query: str) -> list[int]:
        """For each position ``i`` of ``query``, the length of the longest substring ending at ``i`` that
        occurs in the indexed text."""
        nxt, link, length = self._next, self._link, self._length
        v = 0
        n = 0
        out: list[int] = []
        for c in query:
            while v and c not in nxt[v]:
                v = link[v]
                n = length[v]
            step = nxt[v].get(c)
            if step is None:
                v, n = 0, 0
            else:
                v, n = step, n + 1
            out.append(n)
        return out

    def maximal_matches(self, query: str, min_len: int = MIN_REFERENCE_CHARS) -> set[str]:
        """Substrings of ``query`` of at least ``min_len`` characters that occur in the indexed text and
        cannot be extended on either side within ``query`` and still occur."""
        lengths = self.matching_lengths(query)
        out: set[str] = set()
        last = len(lengths) - 1
        for i, n in enumerate(lengths):
            if n >= min_len and (i == last or lengths[i + 1] != n + 1):
                out.add(query[i - n + 1: i + 1])
        return out


def _meaningful(s: str, min_len: int) -> bool:
    return len(s.strip()) >= min_len and any(ch.isalnum() for ch in s)


def reference_strings(index: ReferenceIndex, message: Any, system_text: str,
                      min_len: int = MIN_REFERENCE_CHARS) -> set[str]:
    """Strings the assistant ``message`` re-uses from the indexed context (see the module docstring)."""
    refs: set[str] = set()
    for piece in message_pieces(message):
        refs |= index.maximal_matches(piece, min_len)
    return {s for s in refs if _meaningful(s, min_len) and s not in system_text}
