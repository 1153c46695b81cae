"""Name resolution: :func:`get_counter` keeps one counter per name and process; ``"auto"`` falls back."""

from __future__ import annotations

import logging
import threading
import warnings

from freemem.core.errors import ConfigError, TokenizerError
from freemem.tokens.approx import ApproxCounter
from freemem.tokens.base import TokenCounter
from freemem.tokens.qwen3 import Qwen3Counter
from freemem.tokens.tiktoken import TIKTOKEN_ENCODINGS, TiktokenCounter

__all__ = ["COUNTER_NAMES", "get_counter"]

logger = logging.getLogger("freemem.tokens")

#: Names :func:`get_counter` accepts.
COUNTER_NAMES: tuple[str, ...] = ("auto", "qwen3", "o200k_base", "cl100k_base", "approx")

# The order "auto" tries.
_AUTO_ORDER: tuple[str, ...] = ("qwen3", "o200k_base", "approx")

_COUNTERS: dict[str, TokenCounter] = {}
_COUNTERS_LOCK = threading.RLock()


def _build(name: str) -> TokenCounter:
    if name == "qwen3":
        return Qwen3Counter()
    if name in TIKTOKEN_ENCODINGS:
        return TiktokenCounter(name)
    return ApproxCounter()


def get_counter(name: str = "auto") -> TokenCounter:
    """Return the process-wide counter called ``name`` (loaded once, then reused).

    Names: ``"qwen3"``, ``"o200k_base"``, ``"cl100k_base"``, ``"approx"``, and ``"auto"``, which
    tries ``qwen3``, then ``o200k_base``, then ``approx``, warning (:func:`warnings.warn` and the
    ``freemem.tokens`` logger) when it falls back. Names are case-insensitive.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
        TokenizerError: an explicitly named tokenizer cannot be loaded offline.
    """
    if not isinstance(name, str):
        raise ConfigError(f"counter name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in COUNTER_NAMES:
        raise ConfigError(f"unknown token counter {name!r}; valid names: {', '.join(COUNTER_NAMES)}")
    with _COUNTERS_LOCK:
        counter = _COUNTERS.get(key)
        if counter is not None:
            return counter
        if key != "auto":
            counter = _build(key)
        else:
            failures: list[str] = []
            for candidate in _AUTO_ORDER:
                try:
                    counter = get_counter(candidate)
                    break
                except TokenizerError as exc:
                    failures.append(f"{candidate}: {exc}")
            assert counter is not None  # approx always loads
            if failures:
                message = (
                    f"freemem: token counter 'auto' fell back to {counter.name!r} "
                    f"({'; '.join(failures)})"
                )
                logger.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
        _COUNTERS[key] = counter
        return counter
