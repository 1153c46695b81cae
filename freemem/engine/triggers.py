"""When to clean: every N new tokens (the Free()LM schedule), over a budget, or on a loop in the newest output."""

from __future__ import annotations

from dataclasses import dataclass

from freemem.core.errors import ConfigError
from freemem.core.loops import has_loop

__all__ = ["EveryNTokens", "LoopDetected", "OverBudget", "Trigger", "TriggerState"]


@dataclass(frozen=True)
class TriggerState:
    """What triggers look at: tokens now, tokens right after the last clean, the newest output."""

    tokens: int
    tokens_at_last_clean: int
    newest_text: str = ""


class Trigger:
    """A condition for cleaning. ``check`` returns a short reason, or None."""

    def check(self, state: TriggerState) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class EveryNTokens(Trigger):
    """Clean once ``n`` new tokens have accumulated since the last clean (5,000 in the Free()LM paper)."""

    n: int = 5000

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ConfigError("EveryNTokens.n must be positive")

    def check(self, state: TriggerState) -> str | None:
        grown = state.tokens - state.tokens_at_last_clean
        return f"{grown} new tokens (every {self.n})" if grown >= self.n else None


@dataclass(frozen=True)
class OverBudget(Trigger):
    """Clean when the context is over ``budget`` tokens."""

    budget: int

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise ConfigError("OverBudget.budget must be positive")

    def check(self, state: TriggerState) -> str | None:
        return f"{state.tokens} tokens > budget {self.budget}" if state.tokens > self.budget else None


@dataclass(frozen=True)
class LoopDetected(Trigger):
    """Clean when the newest output ends in (or holds) a repetition loop."""

    min_repeats: int = 3

    def check(self, state: TriggerState) -> str | None:
        return "repetition loop in the newest output" if has_loop(state.newest_text, self.min_repeats) else None
