"""The error hierarchy. Every error freemem raises on purpose is a :class:`FreememError`.

Applying cleaner output never raises (bad commands become rejections in the :class:`~freemem.Outcome`);
these errors are for the caller's own mistakes and for infrastructure that is down.
"""

from __future__ import annotations


class FreememError(Exception):
    """Base class of every error freemem raises on purpose."""


class ConfigError(FreememError, ValueError):
    """An argument or setting is invalid (a negative budget, an unknown counter name...)."""


class FormatError(FreememError, ValueError):
    """An input file or message list is not in a form freemem understands."""


class TokenizerError(FreememError):
    """A token counter could not be loaded offline."""


class CleanerError(FreememError):
    """A cleaner could not produce commands (server down, timeout, unusable output)."""


class CleanerTimeout(CleanerError):
    """The cleaner did not answer in time."""


class CleanerUnavailable(CleanerError):
    """No endpoint could be reached, or the circuit breaker is open."""


class CleanerConfigError(CleanerError, ConfigError):
    """The model server refused the cleaner's request as invalid (a setting is wrong: structured output, model
    name, context length...). Retrying cannot help, so it is never retried and never counts against an
    endpoint's circuit breaker; the message says what was refused and how to fix it. Being a
    :class:`CleanerError`, it still only skips a round inside :class:`~freemem.FreeMemory` (fail open)."""


class StoreError(FreememError):
    """Persistence failed: Redis unreachable, a write not acknowledged, a corrupt record."""


class StoreConnectionError(StoreError, ConnectionError):
    """The store could not be reached (refused, reset, timed out)."""


class MissingExtraError(FreememError, ImportError):
    """An optional part of freemem was used without its dependencies; the message names the extra to install
    (``pip install 'freemem[redis]'``)."""


class ServeError(FreememError):
    """A model server could not be built, started or reached."""


__all__ = [
    "CleanerConfigError",
    "CleanerError",
    "CleanerTimeout",
    "CleanerUnavailable",
    "ConfigError",
    "FormatError",
    "FreememError",
    "MissingExtraError",
    "ServeError",
    "StoreConnectionError",
    "StoreError",
    "TokenizerError",
]
