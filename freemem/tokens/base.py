"""The :class:`TokenCounter` contract and the text hygiene every backend shares.

A counter counts the tokens of a text for one tokenizer; :func:`encodable` makes any Python string
countable (lone surrogates become U+FFFD, the way tiktoken counts them) and :func:`check_budget` validates
a ``max_tokens`` argument. The backends live beside this module (:mod:`freemem.tokens.qwen3`,
:mod:`freemem.tokens.tiktoken`, :mod:`freemem.tokens.approx`), the memoising wrapper in
:mod:`freemem.tokens.cache` and name resolution in :mod:`freemem.tokens.registry`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from freemem.core.errors import ConfigError

__all__ = ["TokenCounter", "check_budget", "encodable"]


class TokenCounter(ABC):
    """Counts the tokens of a text for one tokenizer.

    Subclasses implement :meth:`count`; the rest has working defaults. Counts never include special
    tokens (no BOS/EOS, no chat template): they are the tokens of the text itself.
    """

    #: A short name for the tokenizer (``"qwen3"``, ``"o200k_base"``, ``"approx"``...).
    name: str = "abstract"
    #: How images and documents are billed (:data:`freemem.core.media.IMAGE_RULES`): the provider this
    #: tokenizer stands for. ``"anthropic"`` unless a backend says otherwise (tiktoken: ``"openai"``).
    image_rule: str = "anthropic"

    @abstractmethod
    def count(self, text: str) -> int:
        """Return the number of tokens in ``text`` (``0`` for the empty string)."""

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text, in order. Backends override this to batch."""
        return [self.count(text) for text in texts]

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``.

        Raises:
            NotImplementedError: the backend has no token ids (the approximate counter).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot encode")

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of the token ids ``ids``.

        Raises:
            NotImplementedError: the backend has no token ids (the approximate counter).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot decode")

    def truncate(self, text: str, max_tokens: int) -> str:
        """Return the longest prefix of ``text`` that has at most ``max_tokens`` tokens.

        The result always satisfies ``count(result) <= max_tokens``. This default is a binary search
        over character positions (it assumes counts grow with the prefix, true of every tokenizer up
        to rare BPE corner cases, which the final check covers); backends with token offsets do better.

        Raises:
            ConfigError: ``max_tokens`` is negative.
        """
        check_budget(max_tokens)
        if self.count(text) <= max_tokens:
            return text
        return text[: self._longest_fitting(text, 0, len(text), max_tokens)]

    def _longest_fitting(self, text: str, lo: int, hi: int, max_tokens: int) -> int:
        """Largest ``k`` in ``[lo, hi]`` with ``count(text[:k]) <= max_tokens`` (binary search; ``lo`` if none)."""
        # Invariant: count(text[:lo]) <= max_tokens or lo is the floor we were given.
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        while lo > 0 and self.count(text[:lo]) > max_tokens:  # non-monotone corner case
            lo -= 1
        return lo

    def _truncate_with_starts(self, text: str, max_tokens: int, starts: Sequence[int]) -> str:
        """Truncate using the character offset where each token of ``text`` starts.

        The cut falls inside token number ``max_tokens`` (0-based) or right before it. Candidates are
        checked on a short window (the tokens a few positions back are stable), then the chosen prefix is
        counted in full once, so the ``<= max_tokens`` guarantee never depends on the window.
        """
        n = len(starts)
        if n <= max_tokens:
            return text
        if max_tokens == 0:
            return ""  # every non-empty text has at least one token
        cut = starts[max_tokens]
        end = starts[max_tokens + 1] if max_tokens + 1 < n else len(text)
        anchor = max(0, max_tokens - 16)
        base = starts[anchor]

        def fits(k: int) -> bool:
            return anchor + self.count(text[base:k]) <= max_tokens

        best = -1
        for k in range(end - 1, cut, -1):  # a partial last token, longest first
            if fits(k):
                best = k
                break
        if best < 0 and fits(cut):
            best = cut
        if best >= 0 and self.count(text[:best]) <= max_tokens:
            return text[:best]
        return text[: self._longest_fitting(text, 0, min(end, len(text)), max_tokens)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` made encodable as UTF-8: surrogate pairs held as two code units are joined and every lone
    surrogate becomes U+FFFD (a UTF-16 round trip with ``surrogatepass``/``replace``, what tiktoken does on
    its own). Tokenizer bindings refuse a ``str`` they cannot encode (``tokenizers`` raises TypeError), and
    one such character in a tool result must not stop a thread from being counted. Texts without
    surrogates are returned as they are (the common case costs one C-level scan)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def check_budget(max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ConfigError(f"max_tokens must be a non-negative int, got {max_tokens!r}")
