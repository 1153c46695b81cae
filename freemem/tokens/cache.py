"""A memoising counter: counts per text, bounded LRU, so a new agent turn costs O(new tokens)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from freemem.core.errors import ConfigError
from freemem.tokens.base import TokenCounter

__all__ = ["CachedCounter", "cached_counter"]


class CachedCounter(TokenCounter):
    """Memoises another counter's counts per text, so re-counting a transcript is O(new text).

    The cache is a dict keyed by the text itself: CPython caches a string's hash on the object, and a
    lookup with the very same object compares by identity, so counting the same message strings every
    turn costs a dictionary lookup each. It is bounded LRU (``max_entries`` texts; the least recently used
    is evicted) and holds references to the texts it keys on, so memory is about the size of the texts
    cached. Thread-safe.

    Args:
        counter: the counter to wrap (its ``name`` is reused).
        max_entries: how many distinct texts to keep.

    Raises:
        ConfigError: ``max_entries`` is not a positive int.
    """

    def __init__(self, counter: TokenCounter, max_entries: int = 16384) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigError(f"max_entries must be a positive int, got {max_entries!r}")
        self.counter = counter
        self.name = counter.name
        self.image_rule = counter.image_rule
        self.max_entries = max_entries
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def hits(self) -> int:
        """How many lookups were answered from the cache."""
        return self._hits

    @property
    def misses(self) -> int:
        """How many lookups had to be counted by the wrapped counter."""
        return self._misses

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        """Forget every cached count (the hit/miss statistics are kept)."""
        with self._lock:
            self._cache.clear()

    def _store(self, text: str, n: int) -> None:
        # Caller holds the lock.
        self._cache[text] = n
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def cached(self, text: str) -> int | None:
        """The count of ``text`` when it is already cached (no counting, no recency update), else None."""
        with self._lock:
            return self._cache.get(text)

    def count(self, text: str) -> int:
        """Return the count of ``text``, from the cache when it was seen before."""
        with self._lock:
            n = self._cache.get(text)
            if n is not None:
                self._hits += 1
                self._cache.move_to_end(text)
                return n
            self._misses += 1
        n = self.counter.count(text)
        with self._lock:
            self._store(text, n)
        return n

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Return each text's count; all the misses are counted in one ``count_many`` batch."""
        texts = list(texts)
        out: list[int | None] = [None] * len(texts)
        pending: dict[str, list[int]] = {}
        cache = self._cache
        with self._lock:
            for i, text in enumerate(texts):
                n = cache.get(text)
                if n is not None:
                    cache.move_to_end(text)
                    out[i] = n
                else:
                    pending.setdefault(text, []).append(i)
            self._misses += len(pending)
            self._hits += len(texts) - len(pending)
        if pending:
            missing = list(pending)
            counts = self.counter.count_many(missing)
            with self._lock:
                for text, n in zip(missing, counts):
                    for i in pending[text]:
                        out[i] = n
                    self._store(text, n)
        return out  # type: ignore[return-value]

    def count_texts(self, texts: Iterable[str]) -> int:
        """Return the total count of ``texts`` (cached per text; misses counted in one batch)."""
        return sum(self.count_many(list(texts)))

    def encode(self, text: str) -> list[int]:
        """Delegate to the wrapped counter."""
        return self.counter.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Delegate to the wrapped counter."""
        return self.counter.decode(ids)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Delegate to the wrapped counter (truncation results are not cached)."""
        return self.counter.truncate(text, max_tokens)

    def __repr__(self) -> str:
        return f"CachedCounter({self.counter!r}, max_entries={self.max_entries})"


def cached_counter(counter: TokenCounter | str, *, max_entries: int | None = None) -> CachedCounter:
    """A :class:`CachedCounter` for ``counter``: a counter object (returned as it is when it already caches,
    else wrapped) or a :func:`~freemem.tokens.get_counter` name. ``max_entries`` bounds a new cache (default:
    its default)."""
    from freemem.tokens.registry import get_counter

    base = get_counter(counter) if isinstance(counter, str) else counter
    if isinstance(base, CachedCounter):
        return base
    return CachedCounter(base) if max_entries is None else CachedCounter(base, max_entries=max_entries)
