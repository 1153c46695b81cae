"""Searching an archive: what a hit is, and the ranking every store shares.

``archive.search(thread_id, query, k)`` (and ``asearch``) returns the best-matching archived passages of one
thread as :class:`SearchHit` objects, best first: never another thread's. What a passage is (a folded utterance,
a tool output with its call, a fold's digest, a freed span) and the words it is ranked by are the core's
(:mod:`freemem.core.passages`); each store ranks with BM25 in its own way (an in-memory index, SQLite FTS5, Redis).

A hit's ``text`` is bounded (``text_chars``, the window of the passage that holds the most query words); its
``ref`` is the id that recalls the whole text with the ``recall`` tool. The text is archived conversation and tool
output: data, never instructions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from freemem.core.bm25 import BM25Index
from freemem.core.errors import ConfigError, FormatError
from freemem.core.passages import Passage, event_passages, snippet, terms

__all__ = ["SEARCH_TEXT_CHARS", "SearchHit", "check_search", "distinct_hits", "rank_events", "to_hit"]

#: The most characters of a passage a hit carries (recall its ``ref`` for the whole text).
SEARCH_TEXT_CHARS = 700


@dataclass(frozen=True)
class SearchHit:
    """One archived passage that matches a query.

    Attributes:
        ref: the id that recalls the whole text (``recall(id=ref)``): a message id, a fold handle or a span's id.
        event_id: the archived event that holds it.
        kind: ``"message"`` (an utterance), ``"tool"`` (a tool output), ``"digest"`` (a fold's digest) or
            ``"span"`` (text freed inside a message).
        score: the BM25 relevance (higher is better; comparable within one search only).
        text: the matching part of the passage, at most :data:`SEARCH_TEXT_CHARS` characters.
        role: who said it (``user``, ``assistant``, ``tool``...), when known.
        name: the speaker's or tool's name, when the message has one.
        call: for a tool output, the call that made it (``name(args)``).
        date: the date the message carried in its own metadata, when it had one.
        fold: the handle of the fold the message was folded in (recalls the whole fold).
        created_at: when the event was archived (as stored: epoch seconds or ISO 8601).
    """

    ref: str
    event_id: str
    kind: str
    score: float
    text: str
    role: str | None = None
    name: str | None = None
    call: str | None = None
    date: str | None = None
    fold: str | None = None
    created_at: Any = None

    @property
    def speaker(self) -> str | None:
        """The name when there is one, else the role."""
        return self.name or self.role

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_search(query: Any, k: Any) -> list[str]:
    """The query's terms, after checking the arguments every store's ``search`` takes: a text query
    (:class:`~freemem.core.errors.FormatError` otherwise) and ``k`` a positive int (:class:`ConfigError`). A query
    with no searchable word gives no terms (and the search no hits)."""
    if not isinstance(query, str):
        raise FormatError(f"a search query is a string, got {type(query).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    return terms(query)


def to_hit(passage: Passage, score: float, query_terms: list[str], *, text_chars: int = SEARCH_TEXT_CHARS) -> SearchHit:
    """The hit for a ranked passage, its text cut to the window around the query words."""
    return SearchHit(ref=passage.ref, event_id=passage.event_id, kind=passage.kind, score=round(float(score), 6),
                     text=snippet(passage.text, query_terms, text_chars), role=passage.role, name=passage.name,
                     call=passage.call, date=passage.date, fold=passage.fold, created_at=passage.created_at)


def distinct_hits(ranked: Iterable[tuple[Passage, float]], query_terms: list[str], k: int) -> list[SearchHit]:
    """The first ``k`` hits of ``ranked`` (best first) with distinct ids: one hit per recallable text (the best
    piece of a long one; the same freed text archived twice once)."""
    seen: set[str] = set()
    out: list[SearchHit] = []
    for passage, score in ranked:
        if passage.ref in seen:
            continue
        seen.add(passage.ref)
        out.append(to_hit(passage, score, query_terms))
        if len(out) == k:
            break
    return out


def rank_events(events: Iterable[Mapping[str, Any]], query_terms: list[str], k: int) -> list[SearchHit]:
    """Rank the passages of ``events`` (one thread's) for the query, without a stored index: what a store with no
    index of its own does (correct for any store; it reads every event of the thread)."""
    index: BM25Index[int] = BM25Index()
    passages: list[Passage] = []
    for event in events:
        for passage in event_passages(event):
            index.add(len(passages), terms(passage.indexed_text()))
            passages.append(passage)
    ranked = index.search(query_terms, max(k * 4, k + 8))
    return distinct_hits(((passages[i], s) for i, s in ranked), query_terms, k)
