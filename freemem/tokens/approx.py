"""The approximate counter: a deterministic, dependency-free regex estimate (the last fallback)."""

from __future__ import annotations

import re

from freemem.tokens.base import TokenCounter, check_budget

__all__ = ["ApproxCounter"]


# One piece per match; a piece's cost depends only on the piece, and a prefix of a piece is matched as
# a piece of the same kind, so the count of a prefix is the sum over the pieces before the cut plus the
# cost of a shorter last piece: counts grow with the prefix, which makes truncation exact.
_APPROX_PIECES = re.compile(
    r"[A-Za-z]+(?:'[A-Za-z]{1,2})?"  # an ASCII word, with a contraction ('s, 't, 're, 'll...)
    r"|[0-9]+"  # digits
    r"|[^\x00-\x7f]"  # any other character, one by one (CJK ~ 1 token per character)
    r"|[^\w\s]+[\r\n]*"  # a punctuation run, with the newlines that follow it
    r"|\s+"  # whitespace
    r"|_+"
)


def _approx_piece_cost(piece: str) -> int:
    first = piece[0]
    if first.isascii() and first.isalpha():
        quote = piece.find("'")
        letters = len(piece) if quote < 0 else quote
        # Words up to 10 letters are ~1 token; longer ones split every ~4 letters.
        return (1 if letters <= 10 else 1 + -(-(letters - 10) // 4)) + (quote >= 0)
    if first.isdigit():
        return -(-len(piece) // 2)  # o200k groups 3 digits, Qwen3 splits every digit
    if not first.isascii():
        return 1
    if first.isspace():
        if "\n" in piece or "\r" in piece:
            indent = len(piece) - 1 - max(piece.rfind("\n"), piece.rfind("\r"))
            return 1 + (indent >= 2)  # the newline(s), then an indentation token
        return 1 if len(piece) >= 2 else 0  # a single space joins the next word
    punct = piece.rstrip("\r\n")
    if len(punct) > 3 and punct.count(punct[0]) == len(punct):  # ------, ******, ======
        return -(-len(punct) // 8)
    return -(-len(punct) // 3)


class _PieceCosts(dict):
    """Piece -> cost, filled on first sight: words and punctuation repeat, so counting is a C-level
    ``findall`` plus dict lookups. Cleared when it grows past a bound."""

    LIMIT = 200_000

    def __missing__(self, piece: str) -> int:
        if len(self) > self.LIMIT:
            self.clear()
        cost = self[piece] = _approx_piece_cost(piece)
        return cost


_PIECE_COSTS = _PieceCosts()


class ApproxCounter(TokenCounter):
    """A deterministic, dependency-free estimate: regex pieces (words, digits, punctuation, whitespace).

    Each ASCII word of up to 10 letters counts 1 (longer words add one per 4 letters, a contraction adds
    1); digits count one per 2; every non-ASCII character counts 1; punctuation runs one per 3 characters
    (repeated-character rules such as ``-----`` one per 8); a newline run 1 (+1 for an indentation that
    follows); other whitespace runs of 2+ characters 1.

    Measured error against o200k_base / cl100k_base / Qwen3 (aggregate signed error over the set; the
    worst single sample in brackets), samples of up to 8k characters:

    * English prose (20 Python-reference passages, 60k chars): +1% to +3% (worst 13%)
    * code (18 Python stdlib modules, 144k chars): +2% to +5% (worst 12%)
    * JSON (20 documents, indented and compact, 134k chars): -6% to +1% (worst 13%)

    Half of each set was used to pick the constants and half held out; the held-out half did no worse
    (within +4% in aggregate, 9% worst sample). It is usually a slight overestimate, which errs on the
    safe side for budgets. Text in other scripts is rougher: every
    non-ASCII character counts one token (close for CJK, high for accented Latin).
    """

    name = "approx"

    def count(self, text: str) -> int:
        """Return the estimated number of tokens in ``text``."""
        return sum(map(_PIECE_COSTS.__getitem__, _APPROX_PIECES.findall(text)))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Return the longest prefix of ``text`` whose estimate is at most ``max_tokens`` (character based)."""
        check_budget(max_tokens)
        total = 0
        for match in _APPROX_PIECES.finditer(text):
            piece = match.group()
            cost = _approx_piece_cost(piece)
            if total + cost <= max_tokens:
                total += cost
                continue
            # Cut inside this piece: the longest prefix of it that still fits.
            lo, hi = 0, len(piece) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if total + self.count(piece[:mid]) <= max_tokens:
                    lo = mid
                else:
                    hi = mid - 1
            return text[: match.start() + lo]
        return text
