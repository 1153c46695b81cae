"""The policies ``freemem bench transcripts`` compares, behind one small interface: freemem (stateful, as the
middleware runs it), LangChain's ``ClearToolUsesEdit``, ``trim_messages`` and no pruning."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from freemem.config import Budget, Triggers
from freemem.core.errors import ConfigError
from freemem.memory import FreeMemory
from freemem.tokens import CachedCounter
from freemem_bench._common import (
    load_cleaner,
)

__all__ = ["ClearToolUsesPolicy", "EXTRA_POLICIES", "FreememPolicy", "NoPruning", "POLICIES", "Policy", "TrimPolicy", "build_policies"]

POLICIES: tuple[str, ...] = ("freemem", "clear_tool_uses", "trim", "none")
#: Policies that run only when named in ``--policies``.
EXTRA_POLICIES: tuple[str, ...] = ("trim_human",)


# ------------------------------------------------------------------------------------------- policies


Counter = Callable[[Sequence[Any]], int]


class Policy:
    """A pruning policy under test. :meth:`reset` per trajectory; :meth:`prune` before each model call."""

    name = "policy"
    langchain = False  # reads the LangChain copy of the history

    def reset(self, fixed: int = 0) -> None:
        """Forget the previous trajectory; the next one's requests carry ``fixed`` tokens besides the messages
        (tool definitions), which come out of the budget."""

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        """The context to send to the model, given the full recorded history so far."""
        raise NotImplementedError


class NoPruning(Policy):
    name = "none"

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        return list(history)


class FreememPolicy(Policy):
    """freemem as the middleware runs it: a state that carries forward, cleaned when a trigger fires."""

    name = "freemem"

    def __init__(self, make_memory: Callable[[int], FreeMemory]) -> None:
        self.make_memory = make_memory
        self.memory = make_memory(0)
        self.state: list[Any] = []
        self.seen = 0
        self.tokens_at_last_clean = 0
        self.cleans = 0
        self.last_event: Any = None

    def reset(self, fixed: int = 0) -> None:
        self.memory = self.make_memory(fixed)
        self.state = []
        self.seen = 0
        self.tokens_at_last_clean = 0
        self.cleans = 0

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        self.state.extend(history[self.seen:])
        self.seen = len(history)
        memory = self.memory
        tokens = memory.count_messages(self.state)
        reason = memory.check(tokens, self.tokens_at_last_clean, _newest_text(self.state))
        self.last_event = None
        if reason is not None:
            result = memory.clean(self.state, trigger=reason, tokens=tokens)
            if result.messages is not None:
                self.state = result.messages
            self.tokens_at_last_clean = result.event.tokens_after
            self.last_event = result.event
            self.cleans += 1
        return list(self.state)


def _newest_text(messages: Sequence[Any]) -> str:
    from freemem.messages import newest_text as newest

    return newest(messages)


class ClearToolUsesPolicy(Policy):
    """LangChain ``ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=budget)])`` per model call."""

    name = "clear_tool_uses"
    langchain = True

    def __init__(self, budget: int, count: Counter, **edit_options: Any) -> None:
        self.budget = budget
        self.options = edit_options
        self.count = count
        self.reset()

    def reset(self, fixed: int = 0) -> None:
        from langchain.agents.middleware.context_editing import ClearToolUsesEdit

        self.edit = ClearToolUsesEdit(trigger=max(1, self.budget - fixed), **self.options)

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        # ContextEditingMiddleware.wrap_model_call: deepcopy the request's messages, apply each edit.
        edited = copy.deepcopy(lc_history)
        self.edit.apply(edited, count_tokens=self.count)
        return edited


class TrimPolicy(Policy):
    """``trim_messages(strategy="last", include_system=True, start_on=...)`` at the budget.

    ``start_on=("human", "ai")`` (the default here) is the loosest setting that keeps tool pairs valid: the kept
    window never opens on a tool message whose call was cut. ``start_on="human"`` (policy ``trim_human``) is the
    setting LangChain's docs show for chat models that need a human message first; on agent transcripts with one
    task message it keeps far less.
    """

    langchain = True

    def __init__(self, budget: int, count: Counter, *, start_on: str | tuple[str, ...] = ("human", "ai"),
                 name: str = "trim") -> None:
        self.budget = budget
        self.count = count
        self.start_on = start_on
        self.name = name
        self.fixed = 0

    def reset(self, fixed: int = 0) -> None:
        self.fixed = fixed

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        from langchain_core.messages import trim_messages

        return trim_messages(lc_history, max_tokens=max(1, self.budget - self.fixed), token_counter=self.count,
                             strategy="last",
                             start_on=self.start_on, include_system=True)


def build_policies(names: Sequence[str], *, budget: int, counter: CachedCounter,
                   cleaner: str | Callable[[int | None], Any] | None, every: int | None) -> list[Policy]:
    """The policies named in ``names``, sharing one token counter. ``cleaner`` is a ``--cleaner`` spec or a
    ``budget -> cleaner`` factory (:func:`freemem_bench._common.cleaner_factory`)."""
    measurer = FreeMemory(counter=counter, triggers=Triggers(every_tokens=None, on_loop=False))
    make_cleaner = cleaner if callable(cleaner) else (lambda b: load_cleaner(cleaner, budget=b, counter=counter))

    def make_memory(fixed: int) -> FreeMemory:
        # The request's budget, ``fixed`` of it tool definitions: the cleaner fits the messages' share.
        return FreeMemory(make_cleaner(budget - fixed), counter=counter, budget=Budget(budget, fixed_tokens=fixed),
                          triggers=Triggers(every_tokens=every))

    out: list[Policy] = []
    for name in names:
        if name == "freemem":
            out.append(FreememPolicy(make_memory))
        elif name == "clear_tool_uses":
            out.append(ClearToolUsesPolicy(budget, measurer.count_messages))
        elif name == "trim":
            out.append(TrimPolicy(budget, measurer.count_messages))
        elif name == "trim_human":
            out.append(TrimPolicy(budget, measurer.count_messages, start_on="human", name="trim_human"))
        elif name == "none":
            out.append(NoPruning())
        else:
            raise ConfigError(f"unknown policy {name!r}; choose from {', '.join(POLICIES + EXTRA_POLICIES)}")
    return out
