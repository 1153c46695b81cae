"""Okapi BM25 over an inverted index in memory: the ranking of :class:`freemem.archives.InMemoryArchive` and of
``RedisArchive`` on core Redis (which keeps the postings in Redis and scores with :func:`bm25_scores`).

Documents are added and removed by key (an archive removes an event's passages when it is re-recorded or evicted),
so the index always holds what the archive holds. Scoring walks only the postings of the query's terms: a query
over 10,000 passages reads a few hundred postings, not the passages.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["BM25Index", "bm25_scores", "idf", "top"]

K = TypeVar("K", bound=Hashable)

#: Term-frequency saturation and length normalisation (the usual Okapi values).
K1 = 1.2
B = 0.75


def idf(n_docs: int, df: int) -> float:
    """The (always positive) inverse document frequency of a term found in ``df`` of ``n_docs`` documents."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def bm25_scores(query: Sequence[str], postings: Mapping[str, Mapping[K, int]], lengths: Mapping[K, int],
                n_docs: int, avg_len: float) -> dict[K, float]:
    """BM25 score of every document holding a query term. ``postings[term]`` maps documents to the term's count,
    ``lengths`` documents to their length in terms; a term repeated in the query counts once per repeat."""
    scores: dict[K, float] = {}
    avg = avg_len or 1.0
    for term, times in Counter(query).items():
        docs = postings.get(term)
        if not docs:
            continue
        weight = idf(n_docs, len(docs)) * times
        for doc, tf in docs.items():
            norm = tf + K1 * (1 - B + B * lengths.get(doc, 0) / avg)
            scores[doc] = scores.get(doc, 0.0) + weight * tf * (K1 + 1) / norm
    return scores


def top(scores: Mapping[K, float], k: int, order: Mapping[K, int] | None = None) -> list[tuple[K, float]]:
    """The ``k`` best ``(doc, score)``; ties go to the newer document (higher ``order``) when given."""
    rank = order or {}
    return [(d, s) for s, _, d in heapq.nlargest(k, ((s, rank.get(d, 0), d) for d, s in scores.items()),
                                                 key=lambda x: (x[0], x[1]))]


class BM25Index(Generic[K]):
    """An inverted index of documents (lists of terms) by key, ranked with BM25."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[K, int]] = {}
        self._lengths: dict[K, int] = {}
        self._terms: dict[K, list[str]] = {}
        self._order: dict[K, int] = {}
        self._total = 0
        self._added = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, key: object) -> bool:
        return key in self._lengths

    def add(self, key: K, doc_terms: Iterable[str]) -> None:
        """Index a document under ``key`` (replacing what was there)."""
        self.remove(key)
        counts = Counter(doc_terms)
        for term, tf in counts.items():
            self._postings.setdefault(term, {})[key] = tf
        length = sum(counts.values())
        self._terms[key] = list(counts)
        self._lengths[key] = length
        self._total += length
        self._added += 1
        self._order[key] = self._added

    def remove(self, key: K) -> None:
        """Forget a document (nothing when it is not indexed)."""
        length = self._lengths.pop(key, None)
        if length is None:
            return
        self._order.pop(key, None)
        self._total -= length
        for term in self._terms.pop(key, []):
            docs = self._postings[term]
            del docs[key]
            if not docs:
                del self._postings[term]

    def search(self, query: Sequence[str], k: int) -> list[tuple[K, float]]:
        """The ``k`` best documents for the query terms, best first, with their scores (ties: newest first)."""
        n = len(self._lengths)
        if not n or not query or k <= 0:
            return []
        scores = bm25_scores(query, self._postings, self._lengths, n, self._total / n)
        return top(scores, k, self._order)
