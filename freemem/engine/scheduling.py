"""Choosing what of a clean to keep by what it costs under a prompt cache (:mod:`freemem.core.prompt_cache`).

An edit invalidates the provider's cached prefix from its first changed message on, so keeping a candidate edit
set costs ``write * (tokens after the first change) - read * (what those positions held)`` more than leaving the
context as it is (:meth:`Schedule.extra`). :func:`choose` weighs the candidates (:class:`Option`: the cleaner's
deletions from message ``m`` on, or those plus a fold), as :class:`freemem.FreeMemory` documents under
"Cost-aware scheduling":

* **over budget** (the budget is a hard bound): the candidate that ends within the budget at the lowest cost per
  turn until the context grows back to the budget;
* **under budget**: the candidate whose saving, read on every turn it lasts, pays for the write it forces, or
  none (the round is deferred);
* **cold cache** (idle longer than the TTL): the whole prompt is written either way.

Among equal costs the latest first change wins. Pure arithmetic on token counts: no messages are edited here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.core.folding import FoldRecord
from freemem.core.prompt_cache import PriceModel
from freemem.core.views import MessageView

__all__ = ["MAX_HORIZON_TURNS", "Option", "Schedule", "choose", "turn_tokens"]

#: The most turns a freed token is counted as saving (a context without a budget never has to shrink).
MAX_HORIZON_TURNS = 50.0


@dataclass(frozen=True)
class Option:
    """A candidate edit set of one clean: the cleaner's deletions from message ``start`` on, or every deletion
    plus a fold. ``first`` is its first changed message, ``after`` the tokens it leaves."""

    kind: str
    first: int
    after: int
    start: int = 0
    record: FoldRecord | None = None


def turn_tokens(views: Sequence[MessageView], sizes: Sequence[int], units: int = 4) -> float:
    """How much a conversation grows per turn: the mean size of its newest ``units`` units (an assistant
    message with the tool results that follow it, a human message), at least one token."""
    found: list[int] = []
    run = 0
    for view, size in zip(reversed(views), reversed(sizes)):
        if view.role in ("system", "developer") or view.fold is not None:
            break
        run += size
        if view.role != "tool":
            found.append(run)
            run = 0
            if len(found) >= units:
                break
    return max(1.0, sum(found) / len(found)) if found else max(1.0, float(sum(sizes)))


@dataclass
class Schedule:
    """What :func:`choose` decided: the option kept (None: the round is deferred or had nothing), the ledger's
    ``cache`` record so far, and why a round was deferred (``note``)."""

    sizes: Sequence[int]
    price: PriceModel
    cold: bool
    chosen: Option | None = None
    record: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    _prefix: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._prefix = [0]
        for size in self.sizes:
            self._prefix.append(self._prefix[-1] + size)

    @property
    def total(self) -> int:
        return self._prefix[-1]

    def prefix_tokens(self, option: Option) -> int:
        """Tokens before the option's first change: what stays cached."""
        return self._prefix[min(option.first, len(self.sizes))]

    def extra(self, option: Option) -> float:
        """What keeping ``option`` costs this turn more than leaving the context as it is."""
        if self.cold:  # the whole prompt is written either way
            return self.price.write * (option.after - self.total)
        p = self.prefix_tokens(option)
        return self.price.write * (option.after - p) - self.price.read * (self.total - p)


def choose(options: Sequence[Option], *, sizes: Sequence[int], price: PriceModel, budget: int | None,
           forced: bool, cold: bool, growth: float, turns_so_far: int) -> Schedule:
    """Weigh ``options`` against leaving the context (``sizes``: tokens per message) as it is; see the module
    docstring. ``growth`` is the tokens a turn adds (:func:`turn_tokens`), ``turns_so_far`` the assistant turns
    the conversation has had (a conversation n turns old is expected to last about n more)."""
    plan = Schedule(sizes=sizes, price=price, cold=cold)
    total = plan.total
    chosen: Option | None = None
    if options and forced:
        assert budget is not None
        fits = [o for o in options if o.after <= budget] or [min(options, key=lambda o: o.after)]

        def rate(o: Option) -> float:
            # Cost per turn until the context grows back to the budget: this write spread over those turns,
            # plus reading the context, which grows from `after` to the budget meanwhile.
            turns = max(1.0, (budget - o.after) / growth)
            return plan.extra(o) / turns + price.read * (o.after + budget) / 2

        chosen = min(fits, key=lambda o: (rate(o), -o.first))
    elif options:
        # The turns a saving lasts: until the context would reach the budget anyway, and no more than the
        # conversation has had so far.
        turns = max(1.0, min(MAX_HORIZON_TURNS, float(turns_so_far),
                             MAX_HORIZON_TURNS if budget is None else (budget - total) / growth))

        def net(o: Option) -> float:
            # What it frees, read on every turn it lasts, against the write it forces now.
            return price.read * (total - o.after) * turns - plan.extra(o)

        best = max(options, key=lambda o: (net(o), o.first))
        chosen = best if net(best) > 0 else None
    plan.chosen = chosen
    plan.record = {"price": price.name, "forced": forced, "cold": cold, "options": len(options),
                   "turn_tokens": round(growth)}
    if chosen is None:
        if options:
            best = min(options, key=plan.extra)
            cost = plan.extra(best)
            plan.record.update(decision="deferred", deferred_cost=round(cost, 1), deferred_gain=total - best.after)
            plan.note = (f"deferred: freeing {total - best.after} tokens would not pay for the cache write "
                         f"({cost:.0f} token-units)")
        else:
            plan.record["decision"] = "none"
        plan.record.update(first_change=None, prefix_tokens=total, rewrite_tokens=0, cost=0.0)
    return plan
