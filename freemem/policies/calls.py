"""Model calls of the policies, written once: the request a policy's steps yield (:class:`ModelCall`), how a
call is made (:func:`invoke_model` / :func:`ainvoke_model`) and what it cost (:class:`CallRecord`,
:class:`CallMetrics`), plus the token helpers every policy bounds its prompts with.

A policy step is a generator (see :mod:`freemem.driving`) that yields :class:`ModelCall` requests and
receives the model's answers; a policy's :meth:`handlers` answer them with its chat model, sync or async.
Chat models are duck-typed (``invoke`` / ``ainvoke`` on ``(role, text)`` pairs, ``bind(max_tokens=...)``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from freemem.core.views import MESSAGE_OVERHEAD_TOKENS
from freemem.tokens import TokenCounter

__all__ = [
    "CallMetrics",
    "CallRecord",
    "ModelCall",
    "ainvoke_model",
    "bind_max_tokens",
    "invoke_model",
    "model_handlers",
    "prompt_tokens",
    "tail_tokens",
]


@dataclass
class CallRecord:
    """One model call: what it was for and how big its context was (tokens by the policy's counter)."""

    kind: str  # "segment", "summary", "conclude", "memory", "answer", "fold"
    step: int  # round (summarize) or chunk index (gated)
    prompt_tokens: int
    output_tokens: int
    latency_s: float = 0.0
    #: What the model reported, in OpenAI's names (absent when it reports nothing).
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        """Tokens the model held at the end of the call: prompt plus output."""
        return self.prompt_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_tokens"] = self.context_tokens
        return d


class CallMetrics:
    """Metrics every policy result derives from its ``calls`` (a list of :class:`CallRecord`)."""

    calls: list[CallRecord]

    @property
    def peak_context(self) -> int:
        """The largest context (prompt + output tokens) of any call."""
        return max((c.context_tokens for c in self.calls), default=0)

    @property
    def total_tokens(self) -> int:
        """Prompt plus output tokens over all calls."""
        return sum(c.context_tokens for c in self.calls)


@dataclass(frozen=True)
class ModelCall:
    """A request for one chat-model call (driven by :func:`freemem.driving.drive`): ``prompt`` as
    ``(role, text)`` pairs, the answer bounded to ``max_tokens`` (None: unbounded), by ``model`` (None: the
    policy's own model)."""

    prompt: list[tuple[str, str]]
    max_tokens: int | None = None
    model: Any = None


def bind_max_tokens(model: Any, param: str | None, limit: int) -> Any:
    """``model.bind(**{param: limit})`` when the model supports binding and a parameter name is given."""
    if param and hasattr(model, "bind"):
        return model.bind(**{param: limit})
    return model


def _model_for(call: ModelCall, model: Any, max_tokens_param: str | None) -> Any:
    chosen = call.model if call.model is not None else model
    return chosen if call.max_tokens is None else bind_max_tokens(chosen, max_tokens_param, call.max_tokens)


def invoke_model(call: ModelCall, model: Any, max_tokens_param: str | None) -> Any:
    """Make ``call`` with ``call.model`` (or ``model``), its answer bounded by ``max_tokens_param``."""
    return _model_for(call, model, max_tokens_param).invoke(call.prompt)


def ainvoke_model(call: ModelCall, model: Any, max_tokens_param: str | None) -> Awaitable[Any]:
    """Async twin of :func:`invoke_model` (returns the awaitable)."""
    return _model_for(call, model, max_tokens_param).ainvoke(call.prompt)  # type: ignore[no-any-return]


def model_handlers(model: Any, max_tokens_param: str | None) -> dict[str, Callable[[ModelCall], Any]]:
    """Handlers of :class:`ModelCall` requests by ``model`` (or each call's own), for the sync and async
    drivers: ``{"sync": ..., "async": ...}``."""
    def call(c: ModelCall) -> Any:
        return invoke_model(c, model, max_tokens_param)

    def acall(c: ModelCall) -> Awaitable[Any]:
        return ainvoke_model(c, model, max_tokens_param)

    return {"sync": call, "async": acall}


def prompt_tokens(counter: TokenCounter, prompt: Sequence[tuple[str, str]]) -> int:
    """Tokens of a prompt given as ``(role, text)`` pairs, with the per-message template overhead."""
    return sum(counter.count(text) for _role, text in prompt) + MESSAGE_OVERHEAD_TOKENS * len(prompt)


def tail_tokens(counter: TokenCounter, text: str, max_tokens: int) -> str:
    """The longest suffix of ``text`` with at most ``max_tokens`` tokens (binary search on characters)."""
    if max_tokens <= 0 or not text:
        return ""
    if counter.count(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # find the smallest start whose suffix fits
    while lo < hi:
        mid = (lo + hi) // 2
        if counter.count(text[mid:]) <= max_tokens:
            hi = mid
        else:
            lo = mid + 1
    return text[lo:]
