"""A bounded-memory index of the shared substrings of a growing text, revealed step by step (the reference
strings of ``freemem bench long``)."""

from __future__ import annotations

from freemem_bench.transcripts import MIN_REFERENCE_CHARS

__all__ = ["TextIndex"]

# ------------------------------------------------------------------------------------ text index


class TextIndex:
    """Maximal shared substrings of a query with a growing prefix of a known text, with the results of
    :meth:`freemem_bench.transcripts.ReferenceIndex.maximal_matches` on that prefix.

    The whole text is given up front (a replay knows its session) and :meth:`reveal` moves the end of the
    indexed prefix, so indexing adds no copy of the text and the memory a replay reports is the engine's.
    A bitmap of the hashes of the prefix's ``min_len``-character windows settles most query positions without
    a scan (a clear bit: that window occurs nowhere); the rest are checked exactly with ``str`` searches,
    from the end of the prefix (recent text is where most references come from). Memory: ``bits / 8`` bytes.
    """

    def __init__(self, text: str, min_len: int = MIN_REFERENCE_CHARS, bits: int = 1 << 27) -> None:
        if min_len < 1 or bits < 8 or bits & (bits - 1):
            raise ValueError("min_len must be positive and bits a power of two (at least 8)")
        self.full_text = text
        self.min_len = min_len
        self._mask = bits - 1
        self._bitmap = bytearray(bits // 8)
        self.end = 0  # the indexed prefix is full_text[:end]
        self._hashed = 0  # windows starting before this are in the bitmap

    def reveal(self, end: int) -> None:
        """Index the text up to ``end`` (it only grows)."""
        end = min(end, len(self.full_text))
        if end <= self.end:
            return
        text, k, mask, bitmap = self.full_text, self.min_len, self._mask, self._bitmap
        for i in range(self._hashed, end - k + 1):
            h = hash(text[i:i + k]) & mask
            bitmap[h >> 3] |= 1 << (h & 7)
        self._hashed = max(self._hashed, end - k + 1)
        self.end = end

    def _maybe(self, window: str) -> bool:
        h = hash(window) & self._mask
        return bool(self._bitmap[h >> 3] & (1 << (h & 7)))

    def maximal_matches(self, query: str, min_len: int | None = None) -> set[str]:
        """Substrings of ``query`` of at least ``min_len`` characters that occur in the indexed prefix and
        cannot be extended on either side within ``query`` and still occur.

        Raises:
            ValueError: ``min_len`` is not the one the index was built for.
        """
        k = self.min_len if min_len is None else min_len
        if k != self.min_len:
            raise ValueError(f"this index hashes {self.min_len}-character windows, not {k}")
        text, stop = self.full_text, self.end
        n = len(query)
        # lengths[i]: the longest substring of query ending at i that occurs in the prefix, when at least k
        # (else 0, which is all maximality needs). Its start never moves left from one i to the next (a
        # substring that occurs has all its substrings occurring), so ``j`` is a lower bound carried along,
        # and ``pos`` is where query[j:i] was found (the next character usually extends it in place).
        lengths = [0] * n
        j, pos = 0, -1
        for i in range(k - 1, n):
            hi = i - k + 1  # the start of the k-character window ending at i
            end = i + 1
            if not self._maybe(query[hi:end]):
                j, pos = hi + 1, -1
                continue
            if pos >= 0 and text.startswith(query[j:end], pos, stop):
                lengths[i] = end - j
                continue
            found = text.rfind(query[j:end], 0, stop)
            if found >= 0:
                lengths[i], pos = end - j, found
                continue
            found = text.rfind(query[hi:end], 0, stop)
            if found < 0:
                j, pos = hi + 1, -1
                continue
            lo, top = j + 1, hi  # occurs(start) is False at j, True at hi, monotone in between
            while lo < top:
                mid = (lo + top) // 2
                at = text.rfind(query[mid:end], 0, stop)
                if at >= 0:
                    top, found = mid, at
                else:
                    lo = mid + 1
            j, pos = top, found
            lengths[i] = end - top
        out: set[str] = set()
        for i, m in enumerate(lengths):
            if m >= k and (i == n - 1 or lengths[i + 1] != m + 1):
                out.add(query[i - m + 1:i + 1])
        return out
