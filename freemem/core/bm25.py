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

__all__ = ["BM25Index", "bm25_scores", "idf", "length_norm", "top"]

K = TypeVar("K", bound=Hashable)

#: Term-frequency saturation and length normalisation (the usual Okapi values).
K1 = 1.2
B = 0.75


def idf(n_docs: int, df: int) -> float:
    """The (always positive) inverse document frequency of a term found in ``df`` of ``n_docs`` documents."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def bm25_scores(query: Sequence[str], postings: Mapping[str, Mapping[K, int]], lengths: Mapping[K, int],
                n_docs: int, avg_len: float, *, norms: Mapping[K, float] | None = None) -> dict[K, float]:
    """BM25 score of every document holding a query term. ``postings[term]`` maps documents to the term's count,
    ``lengths`` documents to their length in terms; a term repeated in the query counts once per repeat.
    ``norms`` (optional) holds each document's length normalisation, :func:`length_norm`, precomputed."""
    scores: dict[K, float] = {}
    avg = avg_len or 1.0
    if norms is None:
        norms = {doc: length_norm(length, avg) for doc, length in lengths.items()}
    get = scores.get
    for term, times in Counter(query).items():
        docs = postings.get(term)
        if not docs:
            continue
        weight = idf(n_docs, len(docs)) * times * (K1 + 1)
        for doc, tf in docs.items():
            scores[doc] = get(doc, 0.0) + weight * tf / (tf + norms[doc])
    return scores


def length_norm(length: int, avg_len: float) -> float:
    """BM25's length normalisation of a document of ``length`` terms: ``K1 * (1 - B + B * length / avg)``."""
    return K1 * (1 - B + B * length / (avg_len or 1.0))


def top(scores: Mapping[K, float], k: int) -> list[tuple[K, float]]:
    """The ``k`` best ``(doc, score)``, best first (equal scores: the document scored first)."""
    return [(d, scores[d]) for d in heapq.nlargest(k, scores, key=scores.__getitem__)]


class BM25Index(Generic[K]):
    """An inverted index of documents (lists of terms) by key, ranked with BM25."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[K, int]] = {}
        self._lengths: dict[K, int] = {}
        self._terms: dict[K, list[str]] = {}
        self._norms: dict[K, float] | None = None  # each document's length normalisation, until the next change
        self._total = 0

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
        self._norms = None

    def remove(self, key: K) -> None:
        """Forget a document (nothing when it is not indexed)."""
        length = self._lengths.pop(key, None)
        if length is None:
            return
        self._total -= length
        self._norms = None
        for term in self._terms.pop(key, []):
            docs = self._postings[term]
            del docs[key]
            if not docs:
                del self._postings[term]

    def search(self, query: Sequence[str], k: int) -> list[tuple[K, float]]:
        """The ``k`` best documents for the query terms, best first, with their scores."""
        n = len(self._lengths)
        if not n or not query or k <= 0:
            return []
        avg = self._total / n
        if self._norms is None:
            self._norms = {doc: length_norm(length, avg) for doc, length in self._lengths.items()}
        scores = bm25_scores(query, self._postings, self._lengths, n, avg, norms=self._norms)
        return top(scores, k)
