"""The provider's prompt cache, as a cost model: what an edit to the context costs once prefixes are cached.

Providers and inference servers reuse the key/value state of an unchanged prompt *prefix*: Anthropic bills a
cache read at 0.1x of the input price and a cache write at 1.25x (5-minute TTL), OpenAI bills cached input at a
fraction of the price, SGLang's radix cache and llama.cpp skip the prefill of the cached part. Every edit
invalidates the cache from its first changed position on, so what a pruning round costs depends on *where* its
first change is, not only on how much it frees.

This module is core (no HTTP, no LangChain): it models that cost on plain message lists.

* :class:`PriceModel` — the price of a cached (read) and of an uncached (written) input token, relative to the
  plain input price, and the cache's TTL. Named models: :data:`PRICE_MODELS`; :func:`get_price_model` also
  reads a custom table (``"read=0.1,write=1.25,ttl=300"`` or a JSON file).
* :func:`message_key` — what the model is sent of one message (role, name, text, tool calls; not the id), the
  unit of prefix identity.
* :class:`CacheMeter` — replays a sequence of requests: each request's cached prefix is the run of leading
  messages identical to the previous request's (while the previous request is younger than the TTL); it returns
  a :class:`RequestCost` per request (cached and recomputed tokens, price-weighted cost).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from freemem.core.errors import ConfigError
from freemem.core.views import MessageView, message_views

__all__ = [
    "PRICE_MODELS",
    "CacheMeter",
    "PriceModel",
    "RequestCost",
    "common_prefix",
    "get_price_model",
    "message_key",
    "message_keys",
    "view_keys",
]


@dataclass(frozen=True)
class PriceModel:
    """Prices of input tokens under a prompt cache, relative to the plain input price (1.0).

    Args:
        name: a label for tables.
        read: price of an input token served from the cache (Anthropic 0.1, OpenAI 0.5 or 0.1).
        write: price of an input token that is not in the cache and is written to it (Anthropic 1.25: a
            cache write; 1.0 where writing costs nothing extra, OpenAI).
        ttl_s: seconds a cached prefix lives without being used (None: forever).
    """

    name: str
    read: float
    write: float
    ttl_s: float | None = 300.0

    def __post_init__(self) -> None:
        for label, value in (("read", self.read), ("write", self.write)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"price model {self.name!r}: {label} must be a finite number >= 0")
        if self.write < self.read:
            raise ConfigError(f"price model {self.name!r}: a cache write ({self.write}) cannot cost less than a "
                              f"cache read ({self.read})")
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise ConfigError(f"price model {self.name!r}: ttl_s must be positive or None")

    @property
    def rewrite(self) -> float:
        """What one token costs extra when an edit moves it out of the cache: ``write - read``."""
        return self.write - self.read

    def cost(self, cached: int, uncached: int) -> float:
        """Price-weighted input of one request."""
        return self.read * cached + self.write * uncached

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The named price models (``freemem bench transcripts --price NAME``, ``FreeMemory(cache=NAME)``).
PRICE_MODELS: dict[str, PriceModel] = {
    # Anthropic prompt caching: cache hits 0.1x, 5-minute cache writes 1.25x of the base input price.
    "anthropic": PriceModel("anthropic", read=0.1, write=1.25, ttl_s=300.0),
    # Anthropic's 1-hour cache: writes at 2x.
    "anthropic-1h": PriceModel("anthropic-1h", read=0.1, write=2.0, ttl_s=3600.0),
    # OpenAI automatic caching: cached input at half price (gpt-4o family), no write surcharge; prefixes are
    # usually evicted after 5-10 idle minutes (we take 5).
    "openai": PriceModel("openai", read=0.5, write=1.0, ttl_s=300.0),
    # OpenAI models that bill cached input at 0.1x (gpt-5 family).
    "openai-0.1": PriceModel("openai-0.1", read=0.1, write=1.0, ttl_s=300.0),
    # A local server (SGLang radix cache, llama.cpp): a cached token costs no prefill; the TTL is the
    # server's eviction, which depends on load (taken as never here).
    "prefill": PriceModel("prefill", read=0.0, write=1.0, ttl_s=None),
}


def get_price_model(spec: str | PriceModel | dict[str, Any]) -> PriceModel:
    """A :class:`PriceModel` from a name in :data:`PRICE_MODELS`, a custom table, or a model.

    A custom table is ``"read=0.1,write=1.25,ttl=300"`` (optionally ``name=...``; ``ttl=none`` for no
    expiry), a dict with those keys, or the path of a JSON file holding such a dict.
    """
    if isinstance(spec, PriceModel):
        return spec
    if isinstance(spec, dict):
        return _from_table(dict(spec), "custom")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"price model: expected a name or a table, got {spec!r}")
    text = spec.strip()
    if text in PRICE_MODELS:
        return PRICE_MODELS[text]
    if "=" in text:
        table: dict[str, Any] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"price model {text!r}: {part!r} is not key=value")
            table[key.strip()] = value.strip()
        return _from_table(table, "custom")
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"price model {text!r}: cannot read it ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConfigError(f"price model {text!r}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"price model {text!r}: the JSON must be an object")
        return _from_table(data, path.stem)
    raise ConfigError(f"unknown price model {text!r}; choose from {', '.join(PRICE_MODELS)}, "
                      "or give read=..,write=..,ttl=.. or a JSON file")


def _from_table(table: dict[str, Any], default_name: str) -> PriceModel:
    known = {"name", "read", "write", "ttl", "ttl_s"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"price model: unknown key(s) {', '.join(unknown)} (use read, write, ttl, name)")
    if "read" not in table or "write" not in table:
        raise ConfigError("price model: a custom table needs read and write")

    def number(key: str, value: Any) -> float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"price model: {key}={value!r} is not a number") from None
        return out

    ttl_value = table.get("ttl_s", table.get("ttl", 300))
    ttl = None if ttl_value is None or str(ttl_value).lower() in ("none", "inf", "") else number("ttl", ttl_value)
    return PriceModel(str(table.get("name") or default_name), read=number("read", table["read"]),
                      write=number("write", table["write"]), ttl_s=ttl)


# ----------------------------------------------------------------------------------------- prefixes


def _view_key(view: MessageView) -> Hashable:
    return (view.role, view.name if view.role != "tool" else None, tuple(view.fields), tuple(view.tool_calls),
            view.tool_call_id)


def message_key(message: Any) -> Hashable:
    """What a provider is sent of ``message`` (OpenAI dict or LangChain message), as a hashable value: its
    role, name, text fields and tool calls. Ids are not sent, so two messages equal but for their id match."""
    return _view_key(message_views([message])[0])


def message_keys(messages: Sequence[Any]) -> list[Hashable]:
    """:func:`message_key` of every message (one pass: tool results name their tool the same way)."""
    return view_keys(message_views(messages))


def view_keys(views: Sequence[MessageView]) -> list[Hashable]:
    """:func:`message_key` of every message, from views already read (:func:`message_views`)."""
    return [_view_key(v) for v in views]


def common_prefix(previous: Sequence[Hashable], current: Sequence[Hashable]) -> int:
    """How many leading messages ``current`` shares with ``previous`` (the index of the first change)."""
    n = min(len(previous), len(current))
    for i in range(n):
        if previous[i] != current[i]:
            return i
    return n


@dataclass(frozen=True)
class RequestCost:
    """One request under a prompt cache."""

    tokens: int
    #: Tokens served from the cache (the leading messages identical to the previous request's).
    cached: int
    #: Index of the first message not served from the cache.
    first_change: int
    #: Price-weighted input (``read * cached + write * recomputed``).
    cost: float
    #: Whether the cache had expired (idle longer than the TTL) before this request.
    cold: bool = False

    @property
    def recomputed(self) -> int:
        """Tokens after the first changed position: what a server prefills again (and a provider writes)."""
        return self.tokens - self.cached


class CacheMeter:
    """Replays requests through one prompt cache (one conversation's).

    The cached prefix of a request is the run of leading messages identical to the previous request's, when
    the previous request is at most the TTL old (``at`` times given; without them, the cache never expires).
    """

    def __init__(self, price: PriceModel | str) -> None:
        self.price = get_price_model(price)
        self._keys: list[Hashable] = []
        self._at: float | None = None

    def reset(self) -> None:
        """Forget the cache (a new conversation)."""
        self._keys = []
        self._at = None

    def request(self, keys: Sequence[Hashable], tokens: Sequence[int], *, at: float | None = None
                ) -> RequestCost:
        """Send one request (its messages' :func:`message_key` values and token counts) and return its cost."""
        if len(keys) != len(tokens):
            raise ValueError("keys and tokens must have one entry per message")
        ttl = self.price.ttl_s
        cold = (ttl is not None and at is not None and self._at is not None and at - self._at > ttl)
        first = 0 if cold else common_prefix(self._keys, keys)
        cached = sum(tokens[:first])
        total = sum(tokens)
        self._keys = list(keys)
        self._at = at if at is not None else self._at
        return RequestCost(tokens=total, cached=cached, first_change=first,
                           cost=self.price.cost(cached, total - cached), cold=cold)
