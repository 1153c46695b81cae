"""The value objects that configure :class:`freemem.FreeMemory`, one per feature.

Each groups the settings of one part of the engine, validates them when it is made (a
:class:`~freemem.core.errors.ConfigError` naming the setting), and is immutable, so one object can configure
several memories::

    FreeMemory(
        budget=Budget(16_000, fixed_tokens=1_200),          # or budget=16_000
        triggers=Triggers(every_tokens=5_000, on_loop=True),  # or a list of Trigger objects
        fold=FoldPolicy(keep_units=6, summarizer=chat_model),  # or fold=True / False
        cache=CachePolicy("anthropic", low_water=0.9),       # or cache="anthropic" / None
        rounds=RoundPolicy(max_rounds=3, timeout=660.0),
    )

The defaults are :class:`FreeMemory`'s: ``FreeMemory()`` and ``FreeMemory(triggers=Triggers(), fold=FoldPolicy(),
cache=CachePolicy(), rounds=RoundPolicy())`` are the same memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from freemem.core.apply import Marker
from freemem.core.errors import ConfigError
from freemem.core.media import check_image_rule
from freemem.core.prompt_cache import PriceModel, get_price_model
from freemem.engine.triggers import EveryNTokens, LoopDetected, OverBudget, Trigger

__all__ = ["Budget", "CachePolicy", "FoldPolicy", "RoundPolicy", "Triggers"]


def _share(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")


def _count(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an int >= {least}, got {value!r}")


@dataclass(frozen=True)
class Budget:
    """What the budget counts: ``tokens`` for the whole request the model receives. ``FreeMemory(budget=N)`` is
    ``Budget(N)``.

    Args:
        tokens: the request's budget: system prompt, tool schemas and messages. Over it a round is triggered,
            and the default heuristic cleaner prunes (and folds) until the messages fit. None: no bound (the
            other settings still say how messages are counted).
        fixed_tokens: tokens of the request that are not messages: the system prompt (when it is not a message
            in the list) and the bound tools' schemas (see ``docs/budget.md``). The messages get ``tokens -
            fixed_tokens``. ``FreeMemoryMiddleware`` measures this itself from each model request
            (:meth:`FreeMemory.reserved <freemem.FreeMemory.reserved>`); give it here for ``wrap``,
            ``free_node`` and ``pre_model_hook`` (``freemem.langgraph.request_tokens`` measures it).
        image_rule: how images and documents are billed (:data:`freemem.core.media.IMAGE_RULES`:
            ``"anthropic"`` or ``"openai"``); None: the counter's own (tiktoken encodings: ``"openai"``, the
            others: ``"anthropic"``).
    """

    tokens: int | None = None
    fixed_tokens: int = 0
    image_rule: str | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and (isinstance(self.tokens, bool) or not isinstance(self.tokens, int)
                                        or self.tokens <= 0):
            raise ConfigError("budget must be a positive number of tokens")
        if isinstance(self.fixed_tokens, bool) or not isinstance(self.fixed_tokens, int) or self.fixed_tokens < 0:
            raise ConfigError(f"fixed_tokens must be a non-negative int, got {self.fixed_tokens!r}")
        if self.tokens is not None and self.fixed_tokens >= self.tokens:
            raise ConfigError(f"fixed_tokens ({self.fixed_tokens:,}: system prompt and tool schemas) leave no room "
                              f"for messages in a budget of {self.tokens:,} tokens")
        if self.image_rule is not None:
            check_image_rule(self.image_rule)

    @property
    def messages(self) -> int | None:
        """What the messages get: ``tokens - fixed_tokens`` (None: no bound)."""
        return None if self.tokens is None else self.tokens - self.fixed_tokens


@dataclass(frozen=True)
class Triggers:
    """When a round runs, besides over the budget (which always triggers one when there is a budget).

    Args:
        every_tokens: clean after this many new tokens since the last clean (None or 0: off).
        on_loop: clean when the newest output holds a repetition loop.

    ``FreeMemory(triggers=[...])`` takes your own list of :class:`~freemem.engine.triggers.Trigger` objects
    instead (then the budget triggers only if the list holds an ``OverBudget``).
    """

    every_tokens: int | None = 5000
    on_loop: bool = True

    def __post_init__(self) -> None:
        if self.every_tokens is not None:
            _count("every_tokens", self.every_tokens, 0)
        if not isinstance(self.on_loop, bool):
            raise ConfigError(f"on_loop must be True or False, got {self.on_loop!r}")

    def build(self, budget: int | None) -> list[Trigger]:
        """The trigger objects, for a memory whose messages get ``budget`` tokens (None: no budget)."""
        built: list[Trigger] = []
        if self.every_tokens:
            built.append(EveryNTokens(self.every_tokens))
        if budget is not None:
            built.append(OverBudget(budget))
        if self.on_loop:
            built.append(LoopDetected())
        return built


@dataclass(frozen=True)
class FoldPolicy:
    """Folding (:mod:`freemem.core.folding`): whole units of old messages go into one fold message when
    deletions cannot meet the budget, or when what deletions left of old messages (headers, markers, excerpts,
    protected arguments) passes ``share`` of the budget. Needs a budget. ``FreeMemory(fold=True)`` is
    ``FoldPolicy()``, ``fold=False`` turns folding off.

    Args:
        share: see above; a fold then goes on until that residue is under half of it.
        target: a fold brings the context down to this share of the budget (room for the next steps, so folds
            are rare). Rounds scheduled by cost fold to :attr:`CachePolicy.low_water` instead.
        keep_units: the newest units (human messages; assistant messages with their tool results) that never
            fold.
        digest_tokens: the bound on a fold message's digest; None (default): ``DIGEST_SHARE`` (15%) of the
            budget, at least 100 (a digest holds the specifics of what it folded, several times denser than the
            raw turns it replaces, so a bigger budget gets a proportionally bigger one), and
            ``CHAT_DIGEST_SHARE`` of it in a thread of conversation only (no tool calls or results), where the
            digest is all that stays of the earlier days. A given value bounds every digest.
        summarizer: a chat model (LangChain ``invoke`` / ``ainvoke``) that writes each fold's digest, the
            InftyThink move applied to transcripts (:func:`freemem.core.digest.summary_prompt`, bounded by the
            digest's bound); None (default): the extractive digest, no call. A summariser that fails, times out
            (:attr:`RoundPolicy.timeout`) or answers nothing leaves the extractive digest in place (the event's
            note says why): the fold itself never depends on it.
    """

    share: float = 0.15
    target: float = 0.9
    keep_units: int = 4
    digest_tokens: int | None = None
    summarizer: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _share("fold share", self.share)
        _share("fold target", self.target)
        _count("keep_units", self.keep_units, 0)
        if self.digest_tokens is not None:
            _count("digest_tokens", self.digest_tokens, 16)
        if self.summarizer is not None and not (hasattr(self.summarizer, "invoke")
                                                or hasattr(self.summarizer, "ainvoke")):
            raise ConfigError("summarizer must be a chat model with invoke() / ainvoke()")


@dataclass(frozen=True)
class CachePolicy:
    """Cost-aware scheduling: rounds are chosen by what they cost under a prompt cache
    (:mod:`freemem.core.prompt_cache`; see "Cost-aware scheduling" in :class:`freemem.FreeMemory`).
    ``FreeMemory(cache="anthropic")`` (the default) is ``CachePolicy("anthropic")``; ``cache=None`` turns
    scheduling off (every round applies everything its cleaner proposes).

    Args:
        price: a :class:`~freemem.core.prompt_cache.PriceModel` or its name (``"anthropic"``: reads 0.1x, writes
            1.25x, 5-minute TTL; see :data:`~freemem.core.prompt_cache.PRICE_MODELS`).
        low_water: in rounds scheduled by cost, a fold brings the context down to this share of the budget
            (instead of :attr:`FoldPolicy.target`). 0.9 by default: deeper folds write the cache less often but
            keep less of the conversation (the figures are in the manual's Results page).
        clock: seconds since the epoch, for the cache's TTL (``time.time``; inject a fake one in tests).
    """

    price: PriceModel | str = "anthropic"
    low_water: float = 0.9
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", get_price_model(self.price))
        _share("low_water", self.low_water)
        if not callable(self.clock):
            raise ConfigError("clock must be a callable returning seconds")

    @property
    def model(self) -> PriceModel:
        """The price model (``price``, resolved)."""
        assert isinstance(self.price, PriceModel)
        return self.price


@dataclass(frozen=True)
class RoundPolicy:
    """How a clean's rounds run.

    Args:
        max_rounds: rounds per clean while still over budget and still making progress.
        timeout: seconds one cleaner call (or summariser call) may take (None: no bound). A cleaner still busy
            then is abandoned (a sync ``propose`` runs in a worker thread for this; ``apropose`` is cancelled)
            and the round fails open: a ``RuntimeWarning``, the event's ``error`` set, the state unchanged. A
            cleaner that computes in process (``Cleaner.in_process``: the heuristic) is called directly and is
            not bounded.
        max_freed_share: cap on the share of editable text one round may remove; None uses the cleaner's own
            (1.0 for the verified heuristic, 0.9 for model cleaners).
        marker: what replaces a removed span (see :func:`~freemem.core.apply.apply_commands`); None: the
            default marker.
    """

    max_rounds: int = 3
    timeout: float | None = 660.0
    max_freed_share: float | None = None
    marker: Marker | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _count("max_rounds", self.max_rounds, 1)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                                         or not self.timeout > 0 or math.isnan(self.timeout)):
            raise ConfigError(f"RoundPolicy.timeout must be a positive number of seconds or None, got {self.timeout!r}")
        if self.max_freed_share is not None:
            _share("max_freed_share", self.max_freed_share)
