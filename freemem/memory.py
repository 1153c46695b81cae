"""FreeMemory: the one engine behind every surface — step → measure → maybe clean → persist.

:class:`FreeMemory` is a small facade: it holds the configuration (a cleaner, a token counter, and one value
object per feature from :mod:`freemem.config`: :class:`~freemem.config.Budget`,
:class:`~freemem.config.Triggers`, :class:`~freemem.config.FoldPolicy`, :class:`~freemem.config.CachePolicy`,
:class:`~freemem.config.RoundPolicy`) and runs one clean as a pipeline of stages over one
:class:`~freemem.core.snapshot.Snapshot` of the messages (their views and tokens, read once and updated as
edits land):

1. **rounds**: ask the cleaner, apply its commands safely (:func:`~freemem.core.apply.apply_commands`), measure
   again, up to ``RoundPolicy.max_rounds`` while still over budget;
2. **schedule** (a cache is set and a trigger asked for the clean) or **fold**: decide what of the rounds' edits
   to keep by their prompt-cache cost, or fold old units when deletions were not enough;
3. **digest**: with a summariser, a model writes the new fold's digest.

Each stage returns what it decided; the round's :class:`~freemem.core.ledger.CleanEvent` is written once from
those decisions. Persisting is the caller's job (the LangGraph middleware writes the pruned messages into graph
state; an archive keeps the removed spans).

A cleaner that fails costs one skipped round, a warning and a counted error — never the caller's turn
(fail open for the agent, fail closed for the edit).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from freemem.config import Budget, CachePolicy, FoldPolicy, RoundPolicy, Triggers
from freemem.core.apply import DEFAULT_MESSAGE_MARKER, apply_commands
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.context import Context, Protection
from freemem.core.digest import summary_prompt
from freemem.core.errors import ConfigError, FormatError
from freemem.core.folding import FoldMismatch, FoldRecord, fold_originals, fold_units, make_fold, replace_digest
from freemem.core.ledger import CleanEvent
from freemem.core.outcome import AppliedSpan, Outcome
from freemem.core.prompt_cache import PriceModel, common_prefix, view_keys
from freemem.core.snapshot import Snapshot
from freemem.core.views import (
    MESSAGE_OVERHEAD_TOKENS,
    MessageView,
    count_messages,
    counted_texts,
    image_rule_of,
    message_views,
    views_media_tokens,
)
from freemem.driving import adrive, drive
from freemem.engine.round_calls import (
    as_proposal,
    bound_summarizer,
    call_within,
    cleaner_deadline_error,
    propose_within,
    summary_deadline_error,
)
from freemem.engine.scheduling import Option, choose, turn_tokens
from freemem.engine.triggers import OverBudget, Trigger, TriggerState
from freemem.messages import answer_text, model_usage, newest_text
from freemem.tokens import CachedCounter, TokenCounter, cached_counter

__all__ = ["CHAT_DIGEST_SHARE", "CleanResult", "DIGEST_SHARE", "FreeMemory", "MESSAGE_OVERHEAD_TOKENS", "SummaryRequest",
           "reject_duplicate_ids"]

logger = logging.getLogger("freemem")

#: A fold digest's default bound, as a share of the budget (``FoldPolicy(digest_tokens=None)``).
DIGEST_SHARE = 0.15
#: The default bound of the digest of a fold of conversation only (no tool calls, no tool results): in chat the
#: digest is what remains of every earlier day, so it gets more than twice the room (MemoryBank's probing
#: questions, tuned on 8 users, held out on 7: docs/chat.md).
CHAT_DIGEST_SHARE = 0.35
#: The least room a digest gets while the budget allows it (the header alone is ~25 tokens).
_MIN_DIGEST = 64

#: The keyword arguments FreeMemory took before its value objects, and where each now lives (deprecated: they
#: keep working for one release with a DeprecationWarning).
_LEGACY: dict[str, tuple[str, str]] = {
    "every_tokens": ("triggers", "every_tokens"),
    "on_loop": ("triggers", "on_loop"),
    "fold_share": ("fold", "share"),
    "fold_target": ("fold", "target"),
    "fold_keep_units": ("fold", "keep_units"),
    "digest_tokens": ("fold", "digest_tokens"),
    "summarizer": ("fold", "summarizer"),
    "low_water": ("cache", "low_water"),
    "clock": ("cache", "clock"),
    "marker": ("rounds", "marker"),
    "max_freed_share": ("rounds", "max_freed_share"),
    "max_rounds": ("rounds", "max_rounds"),
    "round_timeout": ("rounds", "timeout"),
    "fixed_tokens": ("budget", "fixed_tokens"),
    "image_rule": ("budget", "image_rule"),
}
_GROUP_CLASS = {"triggers": "Triggers", "fold": "FoldPolicy", "cache": "CachePolicy", "rounds": "RoundPolicy",
                "budget": "Budget"}
#: The attributes FreeMemory had before its value objects, and where each is now read (deprecated: reading one
#: works for one release with a DeprecationWarning), each where its keyword argument now lives. ``cache`` was the
#: price model: it is now ``cache.model``.
_LEGACY_ATTRIBUTES: dict[str, tuple[str, str]] = {
    name: _LEGACY[name]
    for name in ("fold_share", "fold_target", "fold_keep_units", "summarizer", "low_water", "marker",
                 "max_freed_share", "max_rounds", "round_timeout")
}


def _add_usage(into: dict[str, int], usage: Mapping[str, Any]) -> None:
    """Add a model call's token usage (``input_tokens``, ...) to ``into``."""
    for key, value in usage.items():
        into[key] = into.get(key, 0) + int(value)


def reject_duplicate_ids(messages: Sequence[Any], views: Sequence[MessageView] | None = None) -> None:
    """:class:`~freemem.core.errors.FormatError` when two messages share an id. Removed text is put back by
    message id (an archived span names its message; a fold its messages), so with shared ids a restore could
    not tell which message a span came from: such input is refused before anything is edited. ``views``: the
    messages' views when they are read already."""
    seen: dict[str, int] = {}
    for view in views if views is not None else message_views(messages):
        if view.id is None:
            continue
        first = seen.setdefault(view.id, view.index)
        if first != view.index:
            raise FormatError(
                f"messages {first} and {view.index} share the id {view.id!r}: freemem puts removed text back by "
                "message id, so every message needs its own (LangGraph's add_messages reducer assigns them; "
                "drop or renew the duplicate). Nothing was cleaned."
            )


@dataclass(frozen=True)
class SummaryRequest:
    """What the round loop asks its driver for when a fold gets a model digest: ``prompt`` for the
    summariser, answered within ``max_tokens``."""

    prompt: list[tuple[str, str]]
    max_tokens: int


@dataclass
class CleanResult:
    """One round's result: the (maybe) pruned messages or text, and the ledger event."""

    messages: list[Any] | None
    text: str | None
    event: CleanEvent
    outcome: Outcome | None = None

    @property
    def changed(self) -> bool:
        return self.event.applied > 0 or bool(self.event.folds)

    @property
    def folded(self) -> bool:
        """Messages left the list (a fold): persisting needs more than replacing edited messages by id."""
        return bool(self.event.folds)


@dataclass
class _Stats:
    rounds: int = 0
    skipped: int = 0
    errors: int = 0
    tokens_freed: int = 0
    last_error: str | None = None
    by_trigger: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Request:
    """What one clean was asked: messages or a text, why, and how."""

    trigger: str
    messages: Sequence[Any] | None = None
    text: str | None = None
    tokens: int | None = None
    question: str | None = None
    idle_s: float | None = None
    schedule: bool | None = None


@dataclass
class _Rounds:
    """What the rounds stage did: the messages (or text) after its edits and what each round cost."""

    snapshot: Snapshot | None
    text: str | None
    tokens: int
    context: Context
    proposals: list[Proposal] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Decision:
    """What the schedule or fold stage kept: the messages, which of the rounds' spans, the fold made, the cache
    record, notes, and a summariser's usage."""

    snapshot: Snapshot | None
    text: str | None
    tokens: int
    #: The rounds' spans kept are those in messages from this index on (None: every span; past the last
    #: message: none, the round was deferred).
    keep_from: int | None = None
    folds: list[FoldRecord] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    #: Every edit of the rounds is kept as it was (the last round's outcome describes the result).
    whole: bool = True

    def kept(self, outcome: Outcome) -> list[AppliedSpan] | None:
        """The spans of ``outcome`` this decision keeps (None: all)."""
        if self.keep_from is None:
            return None
        return [s for s in outcome.applied if s.message_index is not None and s.message_index >= self.keep_from]


class FreeMemory:
    """The user-facing configuration of freemem, and the engine that runs cleaning rounds.

    Args:
        cleaner: who proposes deletions (a :class:`~freemem.core.cleaner.Cleaner`); the deterministic
            :class:`HeuristicCleaner` by default.
        counter: a :class:`TokenCounter` or a name for :func:`get_counter` ("auto", "qwen3", "o200k_base",
            "cl100k_base", "approx"). Counts are cached per text.
        budget: the token budget of the whole request: an int, or a :class:`~freemem.config.Budget` that also
            says what the system prompt and tools take (``fixed_tokens``) and how images count. Over it a round
            is triggered, and the default heuristic cleaner prunes and folds until the messages fit.
        triggers: when a round runs: :class:`~freemem.config.Triggers` (default: every 5,000 new tokens, on a
            repetition loop, and over the budget), or your own list of :class:`Trigger` objects.
        protection: what may never be edited (:class:`Protection`).
        fold: fold whole units of old messages into one fold message (:mod:`freemem.core.folding`): True
            (:class:`~freemem.config.FoldPolicy` defaults), False, or a ``FoldPolicy``. Needs a budget.
        cache: schedule rounds by what they cost under a prompt cache: a
            :class:`~freemem.config.CachePolicy`, a price model or its name (default ``"anthropic"``: reads
            0.1x, writes 1.25x, 5-minute TTL), or None (every round applies everything its cleaner proposes).
            See "Cost-aware scheduling" below.
        rounds: how a clean's rounds run (:class:`~freemem.config.RoundPolicy`: rounds per clean, the cleaner's
            deadline, the share one round may free, the marker).
        archive: optional store with ``record(thread_id, event_dict)`` (and ``arecord``) that keeps the
            removed spans and folded messages, e.g. :class:`freemem.core.archive.InMemoryArchive` or
            ``freemem.redis.RedisArchive``. With an archive, an edit is persisted only once its record is
            stored (fail closed for the edit).

    The keyword arguments of earlier releases (``every_tokens``, ``on_loop``, ``fold_share``, ``fold_target``,
    ``fold_keep_units``, ``digest_tokens``, ``summarizer``, ``low_water``, ``clock``, ``marker``,
    ``max_freed_share``, ``max_rounds``, ``round_timeout``, ``fixed_tokens``, ``image_rule``) still work for
    this release, with a ``DeprecationWarning`` naming the value object that takes each; so do reads of the old
    attributes (``memory.round_timeout`` is ``memory.rounds.timeout``, ``memory.low_water`` is
    ``memory.cache.low_water``, ...).

    Cost-aware scheduling (``cache`` set, messages only; plain text and ``cache=None`` are cost-blind). An
    edit invalidates the provider's cached prefix from its first changed message on, so a round costs
    ``write * (tokens after the first change) - read * (what those positions held)`` more than not cleaning
    (:attr:`CleanEvent.cache <freemem.core.ledger.CleanEvent.cache>` records it). The candidate edit sets are
    the cleaner's edits from message ``m`` on, for each edited message ``m`` (the latest first change for
    that gain), and those edits plus a fold down to ``CachePolicy.low_water``:

    * **over budget** (the budget is a hard bound) the round takes the candidate that ends within the budget
      at the lowest cost per turn until the next forced round (its cache write spread over the turns until
      the context grows back to the budget, plus reading what stays);
    * **under budget** (every N tokens, a loop) a candidate applies only when what it frees, read on every
      turn until the context would reach the budget anyway, pays for the write it forces (the
      ``clear_at_least`` idea, derived from the price model); otherwise the round is deferred (no edit, the
      event says why);
    * **idle longer than the TTL** (``idle_s`` given to :meth:`check` / :meth:`clean`) the cache is cold
      anyway: the round is free, it runs (``check`` fires) and keeps everything its cleaner proposes.

    Among candidates that cost the same, the one whose first change is latest wins. Turns are measured from
    the messages: the mean size of the newest units (an assistant message with its tool results, a human
    message) is the growth per turn. Figures: ``docs/results.md``.
    """

    def __init__(
        self,
        cleaner: Cleaner | None = None,
        *,
        counter: TokenCounter | str = "auto",
        budget: int | Budget | None = None,
        triggers: Sequence[Trigger] | Triggers | None = None,
        protection: Protection | None = None,
        fold: bool | FoldPolicy = True,
        cache: CachePolicy | PriceModel | str | None = "anthropic",
        rounds: RoundPolicy | None = None,
        archive: Any = None,
        **deprecated: Any,
    ) -> None:
        plan = _settings(budget, triggers, fold, cache, rounds, deprecated)
        limits = plan.budget
        #: The whole request's budget (system prompt, tool schemas and messages), as given.
        self.request_budget: int | None = limits.tokens
        #: The request's tokens outside the messages (see :meth:`reserved`).
        self.fixed_tokens: int = limits.fixed_tokens
        #: The messages' budget: ``request_budget - fixed_tokens`` (None: no budget).
        self.budget: int | None = limits.messages
        #: Folding's settings; None when folding is off.
        self.fold: FoldPolicy | None = plan.fold if plan.fold_on else None
        self._fold_settings = plan.fold
        #: Cost-aware scheduling's settings; None when it is off.
        self.cache: CachePolicy | None = plan.cache
        #: How a clean's rounds run.
        self.rounds: RoundPolicy = plan.rounds
        self._set_digest_bounds()
        self.counter: CachedCounter = cached_counter(counter)
        self._own_cleaner = cleaner is None
        self.image_rule = image_rule_of(self.counter, limits.image_rule)
        budget_ = self.budget
        if cleaner is None:
            from freemem.cleaners.heuristic import HeuristicCleaner

            folds = self.fold is not None and budget_ is not None
            # With folds, whole old turns go as units: budget fitting then shrinks only tool output and
            # leaves conversation text verbatim (the newest turns matter most; folds take the oldest).
            roles = ("tool",) if folds else ("tool", "assistant", "user", "human", "text")
            # Folds make room for the next steps, so rounds need not cut as deep (0.9 of the budget, not 0.8).
            cleaner = HeuristicCleaner(budget=budget_, counter=self.counter, fit_roles=roles,
                                       target=0.9 if folds else 0.8)
        elif not isinstance(cleaner, Cleaner):
            raise ConfigError(f"cleaner must be a freemem Cleaner (subclass freemem.Cleaner), got "
                              f"{type(cleaner).__name__}")
        self.cleaner: Cleaner = cleaner
        given = plan.triggers
        self.triggers: list[Trigger] = given.build(budget_) if isinstance(given, Triggers) else list(given)
        if self.fixed_tokens and budget_ is not None:
            # An OverBudget trigger given with the request's budget bounds the messages' share.
            self._rebase({self.request_budget}, budget_)
        self.protection = protection or Protection()
        self.archive = archive
        #: Fold messages name the ``recall`` tool (set when a surface offers it to the agent).
        self.recall_hint = False
        self.stats = _Stats()

    def __getattr__(self, name: str) -> Any:
        """The attributes of earlier releases (``round_timeout``, ``low_water``, ``fold_share``, ...), read from
        the value object that now holds each, with a ``DeprecationWarning``."""
        if name not in _LEGACY_ATTRIBUTES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        group, attr = _LEGACY_ATTRIBUTES[name]
        warnings.warn(f"FreeMemory.{name} is deprecated and will be removed in the next release: read "
                      f"memory.{group}.{attr}", DeprecationWarning, stacklevel=2)
        held = self.__dict__
        # Folding's settings are kept when folding is off (as the old attributes were); without a cache, the
        # cache's defaults.
        settings = {"fold": held.get("_fold_settings"), "cache": held.get("cache") or CachePolicy(),
                    "rounds": held.get("rounds")}[group]
        return getattr(settings, attr)

    def _set_digest_bounds(self) -> None:
        """The digest bounds for the messages' budget: the fold policy's, or ``DIGEST_SHARE`` of the budget
        (at least 100; 400 without a budget) and ``CHAT_DIGEST_SHARE`` of it for a fold of conversation only."""
        given = self._fold_settings.digest_tokens
        budget = self.budget
        if given is not None:
            #: The bound of a fold message's digest.
            self.digest_tokens: int = given
            #: The digest bound of a fold of conversation only.
            self.chat_digest_tokens: int = given
            return
        self.digest_tokens = max(100, int(DIGEST_SHARE * budget)) if budget is not None else 400
        self.chat_digest_tokens = (max(self.digest_tokens, int(CHAT_DIGEST_SHARE * budget)) if budget
                                   else self.digest_tokens)

    # -- settings read by the surfaces ------------------------------------------------------------------
    @property
    def clock(self) -> Callable[[], float]:
        """Seconds since the epoch, for the cache's TTL (``CachePolicy.clock``; ``time.time`` without a cache)."""
        return self.cache.clock if self.cache is not None else time.time

    @property
    def cache_ttl_s(self) -> float | None:
        """The prompt cache's TTL under cost-aware scheduling (None: off, or a cache that never expires)."""
        return None if self.cache is None else self.cache.model.ttl_s

    # -- the fixed part of the request ------------------------------------------------------------------
    def reserved(self, fixed_tokens: int) -> FreeMemory:
        """This memory for requests whose system prompt and tool schemas take ``fixed_tokens``: the messages
        get ``request_budget - fixed_tokens`` (this memory itself when that is already so).

        A shallow copy: cleaner, counter, archive, triggers and statistics are shared, but the budget, the
        default cleaner's and the ``OverBudget`` triggers' bounds (where they hold this memory's budget or the
        request's; copied, not changed) and the default digest bounds follow the messages' budget. A cleaner
        you gave keeps its own budget (give it the messages' share yourself). Thread-safe: nothing is changed
        in place. When ``fixed_tokens`` alone reaches the request's budget no message list
        can fit: the copy has no budget (it cleans on its other triggers only; the surfaces warn once and note
        it in the ledger).
        """
        if isinstance(fixed_tokens, bool) or not isinstance(fixed_tokens, int) or fixed_tokens < 0:
            raise ConfigError(f"fixed_tokens must be a non-negative int, got {fixed_tokens!r}")
        if fixed_tokens == self.fixed_tokens or self.request_budget is None:
            return self
        total = self.request_budget
        budget = total - fixed_tokens if fixed_tokens < total else None
        out = copy.copy(self)
        out.fixed_tokens = fixed_tokens
        out.budget = budget
        out._set_digest_bounds()
        out._rebase({self.budget, total}, budget)
        return out

    def _rebase(self, old: set[int | None], budget: int | None) -> None:
        """Point the default cleaner's budget and the ``OverBudget`` triggers that hold one of ``old`` (the
        request's budget, or the messages' budget they were given) at the messages' ``budget`` (None: the
        budget's trigger goes). The cleaner is copied (the original serves the other requests); a cleaner you
        gave is yours, with its own budget and state, and is left as it is."""
        if self._own_cleaner and getattr(self.cleaner, "budget", None) in old - {None}:
            self.cleaner = copy.copy(self.cleaner)
            self.cleaner.budget = budget  # type: ignore[attr-defined]
        triggers: list[Trigger] = []
        for trigger in self.triggers:
            if isinstance(trigger, OverBudget) and trigger.budget in old:  # the budget's own trigger
                if budget is None:
                    continue
                trigger = OverBudget(budget)
            triggers.append(trigger)
        self.triggers = triggers

    # -- measuring --------------------------------------------------------------------------------------
    def count_messages(self, messages: Sequence[Any]) -> int:
        """Tokens of a message list: each text field, tool-call arguments and names, the images and
        documents by their pixel size and pages (``image_rule``), plus a per-message overhead. Cached per
        text, so a new turn costs O(new tokens)."""
        return count_messages(self.counter, messages, self.image_rule)

    #: The policy protocol's name for :meth:`count_messages` (see :class:`freemem.policy.MemoryPolicy`).
    def count(self, messages: Sequence[Any]) -> int:
        return self.count_messages(messages)

    def message_tokens(self, messages: Sequence[Any]) -> list[int]:
        """Tokens of each message, as :meth:`count_messages` counts them (their sum is its count)."""
        return [self._view_tokens(v) for v in message_views(messages)]

    def _view_tokens(self, view: MessageView) -> int:
        """Tokens of one message, as :meth:`count_messages` counts it (cached per text)."""
        count = self.counter.count
        return (sum(count(t) for t in counted_texts([view])) + views_media_tokens(self.counter, [view], self.image_rule)
                + MESSAGE_OVERHEAD_TOKENS)

    def snapshot(self, messages: Sequence[Any]) -> Snapshot:
        """``messages`` read once, with each message's tokens as :meth:`count_messages` counts them."""
        return Snapshot.read(messages, self._view_tokens)

    def count_text(self, text: str) -> int:
        return self.counter.count(text)

    def cache_cold(self, idle_s: float | None) -> bool:
        """Whether an idle gap of ``idle_s`` seconds since the last model call has let the cache expire."""
        ttl = self.cache_ttl_s
        return ttl is not None and idle_s is not None and idle_s > ttl

    def check(self, tokens: int, tokens_at_last_clean: int, newest_text: str = "", *,
              idle_s: float | None = None) -> str | None:
        """The first trigger that fires, as a reason, or None.

        ``idle_s``: seconds since the last model call of this conversation. Past the cache's TTL the cache is
        cold, so a round costs no cache write: one runs when the context grew since the last clean."""
        state = TriggerState(tokens=tokens, tokens_at_last_clean=tokens_at_last_clean, newest_text=newest_text)
        for trigger in self.triggers:
            reason = trigger.check(state)
            if reason:
                return reason
        if self.cache_cold(idle_s) and tokens != tokens_at_last_clean:
            return f"cache cold (idle {idle_s:.0f} s > TTL {self.cache_ttl_s:g} s)"
        return None

    def _share(self) -> float:
        if self.rounds.max_freed_share is not None:
            return self.rounds.max_freed_share
        return float(self.cleaner.max_freed_share)

    # -- cleaning ---------------------------------------------------------------------------------------
    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
              idle_s: float | None = None, schedule: bool | None = None) -> CleanResult:
        """Run cleaning rounds on ``messages`` (OpenAI dicts or LangChain messages).

        ``schedule``: choose the edits by their cache cost (see the class docstring); by default a round that
        a trigger asked for is (the surfaces pass :meth:`check`'s reason as ``trigger``), one asked for by
        hand (``trigger="manual"``) applies every edit. Needs ``cache``. ``idle_s``: seconds since the
        conversation's last model call (see :meth:`check`); past the cache's TTL the round is free and keeps
        every edit its cleaner proposes."""
        return self._run(_Request(trigger, messages=messages, tokens=tokens, idle_s=idle_s, schedule=schedule))

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
                     idle_s: float | None = None, schedule: bool | None = None) -> CleanResult:
        """Async twin of :meth:`clean` (the cleaner's ``apropose`` does the I/O)."""
        return await self._arun(_Request(trigger, messages=messages, tokens=tokens, idle_s=idle_s,
                                         schedule=schedule))

    def clean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        """Run cleaning rounds on plain reasoning text."""
        return self._run(_Request(trigger, text=text, question=question))

    async def aclean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        """Async twin of :meth:`clean_text`."""
        return await self._arun(_Request(trigger, text=text, question=question))

    def maybe_clean(self, messages: Sequence[Any], *, tokens_at_last_clean: int = 0,
                    idle_s: float | None = None) -> CleanResult | None:
        """Clean when a trigger fires; None otherwise."""
        tokens = self.count_messages(messages)
        reason = self.check(tokens, tokens_at_last_clean, newest_text(messages), idle_s=idle_s)
        return None if reason is None else self.clean(messages, trigger=reason, tokens=tokens, idle_s=idle_s,
                                                      schedule=True)

    # -- the pipeline -----------------------------------------------------------------------------------
    # Written once as a generator that yields "ask the cleaner" (a Context) and "ask the summariser" (a
    # SummaryRequest) requests, so the sync and async entry points share every line but the calls themselves.
    def _pipeline(self, request: _Request) -> Generator[Any, Any, CleanResult]:
        t0 = time.perf_counter()
        given = self.snapshot(request.messages) if request.messages is not None else None
        if given is not None:
            reject_duplicate_ids(given.messages, given.views)
        if request.tokens is not None:
            before = request.tokens
        else:
            before = given.total if given is not None else self.count_text(request.text or "")
        done = yield from self._edit_rounds(request, given, before)
        schedule = request.schedule if request.schedule is not None else request.trigger != "manual"
        if given is not None and done.snapshot is not None and self.cache is not None and schedule:
            decision = self._schedule(given, before, done, cold=self.cache_cold(request.idle_s))
        else:
            decision = self._fold_stage(given, done)
        if self.fold is not None and self.fold.summarizer is not None and given is not None and decision.folds:
            yield from self._digest_stage(given, decision)
        return self._finish(request, before, done, decision, t0)

    def _edit_rounds(self, request: _Request, given: Snapshot | None, before: int
                     ) -> Generator[Context, Any, _Rounds]:
        """The rounds stage: ask the cleaner, apply its commands, measure, until under budget, out of rounds,
        or a round applies nothing."""
        snapshot, text, tokens = given, request.text, before
        done: _Rounds | None = None
        for _ in range(self.rounds.max_rounds):
            if snapshot is not None:
                context = Context.from_messages(snapshot.messages, protection=self.protection, views=snapshot.views)
            else:
                context = Context.from_text(text or "", question=request.question, protection=self.protection)
            if done is None:
                done = _Rounds(snapshot, text, tokens, context)
            done.context = context
            proposal: Proposal | BaseException = yield context
            if isinstance(proposal, BaseException):
                done.error = f"{type(proposal).__name__}: {proposal}"
                self._fail_round(done.error)
                break
            done.proposals.append(proposal)
            outcome = apply_commands(context, proposal.commands, marker=self.rounds.marker,
                                     max_freed_share=self._share(), counter=self.counter,
                                     max_commands=self.cleaner.max_commands,
                                     # the cleaner's reading of repeated anchors, in what its model was shown
                                     repeated=self.cleaner.repeated, shown=proposal.shown)
            done.outcomes.append(outcome)
            if not outcome.applied:
                break
            if snapshot is not None:
                assert outcome.messages is not None
                snapshot = snapshot.after(outcome.messages)
                tokens = snapshot.total
            else:
                text = outcome.text
                tokens = self.count_text(text or "")
            done.snapshot, done.text, done.tokens = snapshot, text, tokens
            if self.budget is None or tokens <= self.budget:
                break
        assert done is not None
        return done

    def _fail_round(self, error: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = error
        warnings.warn(f"freemem: cleaner {self.cleaner.name} failed, round skipped ({error})",
                      RuntimeWarning, stacklevel=6)
        if logger.hasHandlers():  # else logging's last-resort handler would print the warning twice
            logger.warning("cleaner %s failed, round skipped: %s", self.cleaner.name, error)

    def _fold_stage(self, given: Snapshot | None, done: _Rounds) -> _Decision:
        """Without cost-aware scheduling: keep every edit of the rounds, and fold when due."""
        decision = _Decision(done.snapshot, done.text, done.tokens)
        if done.snapshot is None or given is None or self.fold is None or self.budget is None or done.error:
            return decision
        folded = self._fold_pass(done.snapshot, done.tokens, given)
        if folded is not None:
            decision.snapshot, record = folded
            decision.tokens = decision.snapshot.total
            decision.folds.append(record)
        return decision

    def _digest_stage(self, given: Snapshot, decision: _Decision) -> Generator[SummaryRequest, Any, None]:
        """The digest stage: the summariser writes the digest of the fold this clean made; any failure keeps
        the extractive one (a note says why)."""
        assert decision.snapshot is not None
        record = decision.folds[-1]
        cap = record.digest_cap or self.digest_tokens  # the room the fold gave its digest
        try:
            # What the folded messages said before this clean's deletions (as the extractive digest reads).
            by_id = {v.id: given.messages[v.index] for v in given.views if v.id is not None}
            originals = fold_originals(record)
            source = [by_id.get(v.id, m) if v.id is not None else m
                      for v, m in zip(message_views(originals), originals)]
            prompt = summary_prompt(source, cap)
        except FoldMismatch as exc:
            response: Any = exc
        else:
            response = yield SummaryRequest(prompt, cap)
        why = self._model_digest(decision, record, response, cap)
        decision.notes.append("model digest" if why is None else f"extractive digest kept: {why}")

    def _model_digest(self, decision: _Decision, record: FoldRecord, response: Any, cap: int) -> str | None:
        """Put the summariser's answer in the fold message (header kept); None, or why the extractive digest
        stays."""
        assert decision.snapshot is not None
        if isinstance(response, BaseException):
            return f"summarizer failed ({type(response).__name__}: {response})"
        body = answer_text(response).strip()
        if not body:
            return "the summarizer answered nothing"
        _add_usage(decision.usage, model_usage(response))
        header = record.digest.split("\n", 1)[0]
        text = header + "\n" + self.counter.truncate(body, max(1, cap - self.counter.count(header) - 1))
        new = decision.snapshot.after(replace_digest(decision.snapshot.messages, record, text))
        if self.budget is not None and new.total > max(self.budget, decision.tokens):
            return f"the summary would put the context over the budget ({new.total} tokens)"
        record.digest = text
        record.digest_tokens = self.counter.count(text)
        decision.snapshot, decision.tokens = new, new.total
        return None

    def _finish(self, request: _Request, before: int, done: _Rounds, decision: _Decision, t0: float
                ) -> CleanResult:
        """Write the round's event once, from what each stage decided, and count it."""
        event = CleanEvent(trigger=request.trigger, cleaner=self.cleaner.name)
        event.tokens_before = before
        notes: list[str] = []
        for proposal in done.proposals:
            event.cleaner_latency_s += proposal.latency_s
            event.add_proposal(proposal)
            _add_usage(event.usage, proposal.usage)
            if proposal.note:
                notes = [proposal.note]
        for outcome in done.outcomes:
            event.add_outcome(outcome, kept=decision.kept(outcome))
        event.error = done.error
        event.folds = list(decision.folds)
        _add_usage(event.usage, decision.usage)
        if request.text is not None and decision.text is not None and decision.text != request.text:
            event.cache = self._text_cache_record(request.text, decision.text, before, decision.tokens)
        else:
            event.cache = decision.cache
        notes.extend(decision.notes)
        event.note = "; ".join(notes) if notes else None
        if self.budget is not None and decision.tokens > self.budget and event.error is None:
            event.note_unreachable_budget(done.context, self.budget, self.counter, fixed=self.fixed_tokens)
        event.tokens_after = decision.tokens
        event.latency_s = time.perf_counter() - t0
        self.stats.rounds += 1
        self.stats.tokens_freed += max(0, before - decision.tokens)
        self.stats.by_trigger[request.trigger] = self.stats.by_trigger.get(request.trigger, 0) + 1
        outcome = done.outcomes[-1] if done.outcomes and decision.whole else None
        messages = list(decision.snapshot.messages) if decision.snapshot is not None else None
        return CleanResult(messages=messages, text=decision.text, event=event, outcome=outcome)

    def _fold_pass(self, snapshot: Snapshot, tokens: int, given: Snapshot, *, force: bool = False,
                   target: float | None = None) -> tuple[Snapshot, FoldRecord] | None:
        """Fold the oldest units of ``snapshot`` (``tokens`` in all) when over budget, or when the residue of
        pruned old messages passes the fold share of the budget (or, with ``force``, whenever units may fold);
        None when no fold is due or possible.

        The newest ``keep_units`` units stay unless the budget cannot be met without them (the budget is the
        hard bound; the kept units are a preference). ``given`` are the messages as the caller gave them,
        before this clean's deletions: the digest reads those."""
        assert self.budget is not None and self.fold is not None
        policy = self.fold
        views, sizes = snapshot.views, snapshot.tokens
        plan = fold_units(views, self.protection, keep_units=policy.keep_units)
        probe = self._marker_probe()
        pruned = [probe is not None and any(probe in t for _n, t in v.fields) for v in views]

        def residue_of(units: Sequence[Any]) -> int:
            return sum(sizes[i] for u in units for i in range(u.start, u.end) if pruned[i] or u.fold)

        residue = residue_of(plan.units)
        share_limit = policy.share * self.budget
        if tokens <= self.budget and residue <= share_limit and not force:
            return None
        # A fold of conversation only (chat) keeps a larger digest: it is all that remains of the earlier days.
        chat = not any(v.role == "tool" or v.tool_calls for v in views)
        digest_tokens = self.chat_digest_tokens if chat and self.chat_digest_tokens else self.digest_tokens
        digest_cost = digest_tokens + MESSAGE_OVERHEAD_TOKENS
        if tokens > self.budget and policy.keep_units:
            reachable = tokens - sum(sizes[i] for u in plan.units for i in range(u.start, u.end)) + digest_cost
            if reachable > self.budget:
                plan = fold_units(views, self.protection, keep_units=0)
                residue = residue_of(plan.units)
        if not plan.units:
            return None
        goal, residue_goal = self.budget * (policy.target if target is None else target), share_limit / 2
        freed, count = 0, 0
        for unit in plan.units:
            if count and tokens - freed + digest_cost <= goal and residue <= residue_goal:
                break
            unit_tokens = sum(sizes[unit.start:unit.end])
            freed += unit_tokens
            if unit.fold or any(pruned[unit.start:unit.end]):
                residue -= unit_tokens
            count += 1
        if count == 1 and plan.units[0].fold:
            return None  # only the previous fold message: nothing new to fold
        # The digest gets its bound, or less when what stays would leave it no room under the goal (a long
        # current turn): never so much that the fold itself breaks the budget.
        rest = tokens - freed + MESSAGE_OVERHEAD_TOKENS
        cap = min(digest_tokens, max(_MIN_DIGEST, int(goal) - rest))
        cap = max(_MIN_DIGEST // 2, min(cap, self.budget - rest))
        before = {v.id: v for v in given.views if v.id is not None}
        new, record = make_fold(snapshot.messages, views, plan, count, counter=self.counter,
                                digest_tokens=cap, sizes=sizes, recall=self.recall_hint, before=before)
        folded = snapshot.after(new)
        if folded.total >= tokens:
            return None  # the digest would cost what the fold frees
        return folded, record

    # -- cost-aware scheduling ---------------------------------------------------------------------------
    def _schedule(self, given: Snapshot, before: int, done: _Rounds, *, cold: bool) -> _Decision:
        """The schedule stage: choose what of this clean's edits to keep by what each candidate costs under
        the cache (see the class docstring): the rounds' deletions from an edited message on, or those plus a
        fold down to ``low_water``."""
        assert self.cache is not None and done.snapshot is not None
        price = self.cache.model
        full = done.snapshot
        sizes, total = given.tokens, given.total
        growth = turn_tokens(given.views, sizes)
        forced = self.budget is not None and before > self.budget
        options: list[Option] = []
        edited = sorted({s.message_index for o in done.outcomes for s in o.applied if s.message_index is not None})
        gain = 0
        for m in reversed(edited):  # the edits from message m on: the latest first change for that gain
            gain += sizes[m] - full.tokens[m]
            options.append(Option("delete", m, total - gain, start=m))
        folded_to: Snapshot | None = None  # the fold option's messages (a clean has at most one)
        if self.fold is not None and self.budget is not None and done.error is None:
            folded = self._fold_pass(full, done.tokens, given, force=forced, target=self.cache.low_water)
            if folded is not None:
                new, record = folded
                first = common_prefix(view_keys(given.views), view_keys(new.views))
                options.append(Option("fold", first, new.total, record=record))
                folded_to = new
        plan = choose(options, sizes=sizes, price=price, budget=self.budget, forced=forced, cold=cold,
                      growth=growth, turns_so_far=sum(1 for v in given.views if v.role == "assistant"))
        record, chosen = plan.record, plan.chosen
        if chosen is None:
            return _Decision(given, None, total, keep_from=len(given) + 1, cache=record,
                             notes=[plan.note] if plan.note else [], whole=False)
        if chosen.kind == "delete":
            partial = chosen.start > edited[0]
            kept = given.mixed(full, chosen.start)
            decision = _Decision(kept, None, kept.total if partial else done.tokens, keep_from=chosen.start,
                                 whole=not partial)
        else:
            assert chosen.record is not None and folded_to is not None
            partial = False
            decision = _Decision(folded_to, None, chosen.after, folds=[chosen.record])
        p = plan.prefix_tokens(chosen)
        after = decision.tokens
        record.update(decision="applied", kind=chosen.kind, partial=partial, first_change=chosen.first,
                      prefix_tokens=p, rewrite_tokens=after - p,
                      cost=round(plan.extra(replace(chosen, after=after)), 1))
        decision.cache = record
        return decision

    def _text_cache_record(self, old: str, new: str, before: int, after: int) -> dict[str, Any]:
        """What an edit of plain text costs a server that continues from it (the reasoning loop): the text up
        to the first changed character stays cached, the rest is prefilled again."""
        first = 0
        limit = min(len(old), len(new))
        while first < limit and old[first] == new[first]:
            first += 1
        kept = self.count_text(old[:first]) if first else 0
        price = None if self.cache is None else self.cache.model
        record: dict[str, Any] = {"price": None if price is None else price.name,
                                  "decision": "applied", "first_change_char": first, "prefix_tokens": kept,
                                  "rewrite_tokens": max(0, after - kept)}
        if price is not None:
            record["cost"] = round(price.write * (after - kept) - price.read * (before - kept), 1)
        return record

    def _marker_probe(self) -> str | None:
        """A string every marker of this configuration starts with (to tell pruned messages), if any."""
        marker = self.rounds.marker if self.rounds.marker is not None else DEFAULT_MESSAGE_MARKER
        if callable(marker):
            return None
        head = marker.split("{", 1)[0]
        return head if len(head) >= 4 else None

    # -- driving the pipeline: the calls themselves ------------------------------------------------------
    def _deadline(self) -> float | None:
        """The cleaner's deadline: none for a cleaner that computes in process."""
        return None if self.cleaner.in_process else self.rounds.timeout

    def _run(self, request: _Request) -> CleanResult:
        timeout = self.rounds.timeout

        def summarize(ask: SummaryRequest) -> Any:
            model = bound_summarizer(self._summarizer(), ask.max_tokens)
            return call_within(lambda: model.invoke(ask.prompt), timeout, "freemem-summarizer",
                               lambda: summary_deadline_error(timeout))

        def propose(context: Context) -> Proposal | BaseException:
            return as_proposal(self.cleaner, propose_within(self.cleaner, context, self._deadline()))

        return drive(self._pipeline(request), {SummaryRequest: summarize, Context: propose})

    async def _arun(self, request: _Request) -> CleanResult:
        # fail_open: any cleaner or summariser failure is sent to the pipeline, which skips the round.
        timeout = self.rounds.timeout

        async def summarize(ask: SummaryRequest) -> Any:
            model = bound_summarizer(self._summarizer(), ask.max_tokens)
            call = (model.ainvoke(ask.prompt) if hasattr(model, "ainvoke")
                    else asyncio.to_thread(model.invoke, ask.prompt))
            try:
                return await _within(call, timeout)
            except TimeoutError:
                return summary_deadline_error(timeout)

        async def propose(context: Context) -> Proposal | BaseException:
            try:
                answer = await _within(self.cleaner.apropose(context), self._deadline())
            except TimeoutError:
                answer = cleaner_deadline_error(self.cleaner, timeout)
            return as_proposal(self.cleaner, answer)

        return await adrive(self._pipeline(request), {SummaryRequest: summarize, Context: propose},
                            fail_open=True)

    def _summarizer(self) -> Any:
        assert self.fold is not None and self.fold.summarizer is not None
        return self.fold.summarizer


async def _within(call: Awaitable[Any], seconds: float | None) -> Any:
    return await (call if seconds is None else asyncio.wait_for(call, seconds))


@dataclass(frozen=True)
class _Settings:
    """FreeMemory's arguments as value objects (folding's settings are kept when folding is off: they say the
    digest bound)."""

    budget: Budget
    triggers: Sequence[Trigger] | Triggers
    fold: FoldPolicy
    fold_on: bool
    cache: CachePolicy | None
    rounds: RoundPolicy


def _settings(budget: int | Budget | None, triggers: Sequence[Trigger] | Triggers | None,
              fold: bool | FoldPolicy, cache: CachePolicy | PriceModel | str | None, rounds: RoundPolicy | None,
              deprecated: dict[str, Any]) -> _Settings:
    """FreeMemory's value objects from its arguments, the deprecated keyword arguments mapped onto them (a
    ``DeprecationWarning`` each)."""
    unknown = sorted(set(deprecated) - set(_LEGACY))
    if unknown:
        raise TypeError(f"FreeMemory() got an unexpected keyword argument {unknown[0]!r}")
    old: dict[str, dict[str, Any]] = {}
    for name, value in deprecated.items():
        group, attr = _LEGACY[name]
        warnings.warn(f"FreeMemory({name}=...) is deprecated and will be removed in the next release: use "
                      f"{group}={_GROUP_CLASS[group]}({attr}=...) (freemem.{_GROUP_CLASS[group]})",
                      DeprecationWarning, stacklevel=3)
        old.setdefault(group, {})[attr] = value

    def given(group: str, value: Any, kind: type) -> None:
        if group in old and isinstance(value, kind):
            names = ", ".join(k for k, (g, _a) in _LEGACY.items() if g == group and k in deprecated)
            raise ConfigError(f"give {names} inside the {_GROUP_CLASS[group]} passed as {group}=, not beside it")

    given("budget", budget, Budget)
    if isinstance(budget, Budget):
        limits = budget
    elif budget is None or (isinstance(budget, int) and not isinstance(budget, bool)):
        limits = Budget(budget, **old.get("budget", {}))
    else:
        raise ConfigError(f"budget must be an int, a Budget or None, got {type(budget).__name__}")
    given("triggers", triggers, Triggers)
    if triggers is None:
        triggers = Triggers(**old.get("triggers", {}))
    elif not isinstance(triggers, Triggers):
        # A list of Trigger objects replaces the defaults (every_tokens and on_loop are then not used).
        if isinstance(triggers, (str, bytes)) or not all(isinstance(t, Trigger) for t in triggers):
            raise ConfigError("triggers must be a Triggers or a list of Trigger objects")
    given("fold", fold, FoldPolicy)
    if isinstance(fold, FoldPolicy):
        folding, fold_on = fold, True
    elif isinstance(fold, bool):
        folding, fold_on = FoldPolicy(**old.get("fold", {})), fold
    else:
        raise ConfigError(f"fold must be True, False or a FoldPolicy, got {type(fold).__name__}")
    given("cache", cache, CachePolicy)
    if cache is None:
        if "cache" in old:  # checked as before, though nothing is scheduled without a cache
            CachePolicy(**old["cache"])
        caching = None
    elif isinstance(cache, CachePolicy):
        caching = cache
    else:
        caching = CachePolicy(cache, **old.get("cache", {}))
    given("rounds", rounds, RoundPolicy)
    if rounds is None:
        rounds = RoundPolicy(**old.get("rounds", {}))
    elif not isinstance(rounds, RoundPolicy):
        raise ConfigError(f"rounds must be a RoundPolicy, got {type(rounds).__name__}")
    return _Settings(limits, triggers, folding, fold_on, caching, rounds)
