"""FreeMemory: the one engine behind every surface — step → measure → maybe clean → persist.

It holds the configuration (cleaner, token counter, triggers, protections, marker, share cap) and runs one
cleaning round on a message list or a text: measure, ask the cleaner, apply the commands safely, measure
again, and describe the round in a :class:`~freemem.core.ledger.CleanEvent`. Persisting is the caller's job (the
LangGraph middleware writes the pruned messages into graph state; an archive keeps the removed spans).

A cleaner that fails costs one skipped round, a warning and a counted error — never the caller's turn
(fail open for the agent, fail closed for the edit).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from freemem.core.apply import DEFAULT_MAX_COMMANDS, DEFAULT_MESSAGE_MARKER, Marker, apply_commands
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.context import Context, Protection
from freemem.core.digest import summary_prompt
from freemem.core.errors import ConfigError
from freemem.core.folding import FoldMismatch, FoldRecord, fold_originals, fold_units, make_fold, replace_digest
from freemem.core.ledger import CleanEvent
from freemem.core.media import check_image_rule
from freemem.core.outcome import Outcome
from freemem.core.prompt_cache import PriceModel, common_prefix, get_price_model, message_keys
from freemem.core.round_calls import (
    as_proposal,
    bound_summarizer,
    call_within,
    cleaner_deadline_error,
    propose_within,
    summary_deadline_error,
)
from freemem.core.scheduling import Option, choose, turn_tokens
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
from freemem.messages import answer_text, model_usage, newest_text
from freemem.policies.triggers import EveryNTokens, LoopDetected, OverBudget, Trigger, TriggerState
from freemem.tokens import CachedCounter, TokenCounter, cached_counter

__all__ = ["CHAT_DIGEST_SHARE", "CleanResult", "DIGEST_SHARE", "FreeMemory", "MESSAGE_OVERHEAD_TOKENS", "SummaryRequest"]

logger = logging.getLogger("freemem")

#: A fold digest's default bound, as a share of the budget (``FreeMemory(digest_tokens=None)``).
DIGEST_SHARE = 0.15
#: The default bound of the digest of a fold of conversation only (no tool calls, no tool results): in chat the
#: digest is what remains of every earlier day, so it gets more than twice the room (MemoryBank's probing
#: questions, tuned on 8 users, held out on 7: docs/chat.md).
CHAT_DIGEST_SHARE = 0.35
#: The least room a digest gets while the budget allows it (the header alone is ~25 tokens).
_MIN_DIGEST = 64


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


class FreeMemory:
    """The user-facing configuration of freemem, and the engine that runs cleaning rounds.

    Args:
        cleaner: who proposes deletions; the deterministic :class:`HeuristicCleaner` by default.
        counter: a :class:`TokenCounter` or a name for :func:`get_counter` ("auto", "qwen3",
            "o200k_base", "cl100k_base", "approx"). Counts are cached per text.
        budget: token budget of the context. Over it a round is triggered, and the default heuristic
            cleaner prunes until the context fits.
        every_tokens: clean after this many new tokens since the last clean (None: off). Default 5,000.
        on_loop: clean when the newest output holds a repetition loop.
        triggers: replaces the three above with your own list of :class:`Trigger` objects.
        protection: what may never be edited (:class:`Protection`).
        marker: what replaces a removed span (see :func:`apply_commands`).
        max_freed_share: cap on the share of editable text one round may remove; None uses the cleaner's
            own (1.0 for the verified heuristic, 0.9 for model cleaners).
        max_rounds: rounds per clean while still over budget and still making progress.
        archive: optional store with ``record(thread_id, event_dict)`` (and ``arecord``) that keeps the
            removed spans and folded messages, e.g. :class:`freemem.core.archive.InMemoryArchive` or
            ``freemem.redis.RedisArchive``. With an archive, an edit is persisted only once its record is
            stored (fail closed for the edit).
        fold: fold whole units of old messages into one fold message (:mod:`freemem.core.folding`) when
            deletions cannot meet the budget, or when what deletions left of old messages (headers, markers,
            excerpts, protected arguments) passes ``fold_share`` of the budget. Needs a ``budget``.
        fold_share: see ``fold``; a fold then goes on until that residue is under half of it.
        fold_target: a fold brings the context down to this share of the budget (room for the next steps,
            so folds are rare). Rounds scheduled by cost fold to ``low_water`` instead.
        fold_keep_units: the newest units (human messages; assistant messages with their tool results)
            that never fold.
        digest_tokens: the bound on a fold message's digest; default ``DIGEST_SHARE`` (15%) of the budget,
            at least 100 (a digest holds the specifics of what it folded, several times denser than the raw
            turns it replaces, so a bigger budget gets a proportionally bigger one), and
            ``CHAT_DIGEST_SHARE`` (35%) in a thread of conversation only (no tool calls or results), where the
            digest is all that stays of the earlier days. A given value bounds every digest.
        summarizer: a chat model (LangChain ``invoke`` / ``ainvoke``) that writes each fold's digest, the
            InftyThink move applied to transcripts (:func:`freemem.core.digest.summary_prompt`, bounded by
            ``digest_tokens``); None (default): the extractive digest, no call. A summariser that fails, times
            out (``round_timeout``) or answers nothing leaves the extractive digest in place (the event's note
            says why): the fold itself never depends on it.
        round_timeout: seconds one cleaner call may take (None: no bound). A cleaner still busy then is
            abandoned (a sync ``propose`` runs in a worker thread for this; ``apropose`` is cancelled) and
            the round fails open: a ``RuntimeWarning``, the event's ``error`` set, the state unchanged.
        cache: schedule rounds by what they cost under a prompt cache (:mod:`freemem.core.prompt_cache`): a price
            model or its name (default ``"anthropic"``: reads 0.1x, writes 1.25x, 5-minute TTL); None turns
            cost-aware scheduling off (every round applies everything its cleaner proposes). See
            "Cost-aware scheduling" below.
        low_water: in rounds scheduled by cost, a fold brings the context down to this share of the budget
            (instead of ``fold_target``). 0.9 by default: on the OpenHands transcripts at 16k, deeper folds
            cost about the same cache (0.915x of no pruning at 0.9, 0.914x at 0.8, 0.87x at 0.5) and keep
            less of the conversation (retention 0.9566 at 0.9, 0.9550 at 0.8, 0.9487 at 0.5; below
            ``trim_messages`` on long chats at 0.5 and 0.7).
        clock: seconds since the epoch, for the cache's TTL (``time.time``; inject a fake one in tests).
        fixed_tokens: tokens of the request that are not messages: the system prompt (when it is not a message
            in the list) and the bound tools' schemas (see ``docs/budget.md``). ``budget`` is the whole request,
            so the messages get ``budget - fixed_tokens``. ``FreeMemoryMiddleware`` measures this itself from
            each model request (:meth:`reserved`); give it here for ``wrap``, ``free_node`` and
            ``pre_model_hook`` (``freemem.langgraph.request_tokens`` measures it).
        image_rule: how images and documents are billed (:data:`freemem.core.media.IMAGE_RULES`:
            ``"anthropic"`` or ``"openai"``); None: the counter's own (tiktoken encodings: ``"openai"``,
            the others: ``"anthropic"``).

    Cost-aware scheduling (``cache`` set, messages only; plain text and ``cache=None`` are cost-blind). An
    edit invalidates the provider's cached prefix from its first changed message on, so a round costs
    ``write * (tokens after the first change) - read * (what those positions held)`` more than not cleaning
    (:attr:`CleanEvent.cache <freemem.core.ledger.CleanEvent.cache>` records it). The candidate edit sets are
    the cleaner's edits from message ``m`` on, for each edited message ``m`` (the latest first change for
    that gain), and those edits plus a fold down to ``low_water``:

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
    message) is the growth per turn.
    """

    def __init__(
        self,
        cleaner: Cleaner | None = None,
        *,
        counter: TokenCounter | str = "auto",
        budget: int | None = None,
        every_tokens: int | None = 5000,
        on_loop: bool = True,
        triggers: Sequence[Trigger] | None = None,
        protection: Protection | None = None,
        marker: Marker | None = None,
        max_freed_share: float | None = None,
        max_rounds: int = 3,
        archive: Any = None,
        fold: bool = True,
        fold_share: float = 0.15,
        fold_target: float = 0.9,
        fold_keep_units: int = 4,
        digest_tokens: int | None = None,
        round_timeout: float | None = 660.0,
        cache: PriceModel | str | None = "anthropic",
        low_water: float = 0.9,
        clock: Callable[[], float] = time.time,
        summarizer: Any = None,
        fixed_tokens: int = 0,
        image_rule: str | None = None,
    ) -> None:
        if budget is not None and budget <= 0:
            raise ConfigError("budget must be a positive number of tokens")
        if isinstance(fixed_tokens, bool) or not isinstance(fixed_tokens, int) or fixed_tokens < 0:
            raise ConfigError(f"fixed_tokens must be a non-negative int, got {fixed_tokens!r}")
        if budget is not None and fixed_tokens >= budget:
            raise ConfigError(f"fixed_tokens ({fixed_tokens:,}: system prompt and tool schemas) leave no room "
                              f"for messages in a budget of {budget:,} tokens")
        #: The whole request's budget (system prompt, tool schemas and messages), as given.
        self.request_budget = budget
        #: The request's tokens outside the messages (see :meth:`reserved`).
        self.fixed_tokens = fixed_tokens
        self._default_digest = digest_tokens is None
        if budget is not None:
            budget -= fixed_tokens  # from here on, ``budget`` is what the messages get
        if max_rounds < 1:
            raise ConfigError("max_rounds must be at least 1")
        if not 0 < low_water <= 1:
            raise ConfigError("low_water must be in (0, 1]")
        self.cache: PriceModel | None = None if cache is None else get_price_model(cache)
        self.low_water = low_water
        if not 0 < fold_share <= 1 or not 0 < fold_target <= 1:
            raise ConfigError("fold_share and fold_target must be in (0, 1]")
        #: The digest bound of a fold of conversation only (``CHAT_DIGEST_SHARE`` of the budget unless
        #: ``digest_tokens`` was given).
        self.chat_digest_tokens = digest_tokens
        if digest_tokens is None:
            digest_tokens = max(100, int(DIGEST_SHARE * budget)) if budget is not None else 400
            self.chat_digest_tokens = max(digest_tokens, int(CHAT_DIGEST_SHARE * budget)) if budget else digest_tokens
        if not callable(clock):
            raise ConfigError("clock must be a callable returning seconds")
        self.clock = clock
        if summarizer is not None and not (hasattr(summarizer, "invoke") or hasattr(summarizer, "ainvoke")):
            raise ConfigError("summarizer must be a chat model with invoke() / ainvoke()")
        self.summarizer = summarizer
        if fold_keep_units < 0 or digest_tokens < 16:
            raise ConfigError("fold_keep_units must be >= 0 and digest_tokens >= 16")
        self.counter: CachedCounter = cached_counter(counter)
        self.image_rule = image_rule_of(self.counter) if image_rule is None else check_image_rule(image_rule)
        if cleaner is None:
            from freemem.cleaners.heuristic import HeuristicCleaner

            # With folds, whole old turns go as units: budget fitting then shrinks only tool output and
            # leaves conversation text verbatim (the newest turns matter most; folds take the oldest).
            roles = ("tool",) if fold and budget is not None else ("tool", "assistant", "user", "human", "text")
            # Folds make room for the next steps, so rounds need not cut as deep (0.9 of the budget, not 0.8).
            target = 0.9 if fold and budget is not None else 0.8
            cleaner = HeuristicCleaner(budget=budget, counter=self.counter, fit_roles=roles, target=target)
        self.cleaner = cleaner
        #: The messages' budget: ``request_budget - fixed_tokens`` (None: no budget).
        self.budget = budget
        if triggers is None:
            built: list[Trigger] = []
            if every_tokens:
                built.append(EveryNTokens(every_tokens))
            if budget is not None:
                built.append(OverBudget(budget))
            if on_loop:
                built.append(LoopDetected())
            triggers = built
        self.triggers = list(triggers)
        if fixed_tokens and budget is not None:
            # A cleaner or an OverBudget trigger given with the request's budget bounds the messages' share.
            self._rebase({self.request_budget}, budget)
        self.protection = protection or Protection()
        self.marker = marker
        self.max_freed_share = max_freed_share
        self.max_rounds = max_rounds
        self.archive = archive
        self.fold = fold
        self.fold_share = fold_share
        self.fold_target = fold_target
        self.fold_keep_units = fold_keep_units
        self.digest_tokens = digest_tokens
        #: Fold messages name the ``recall`` tool (set when a surface offers it to the agent).
        self.recall_hint = False
        self.stats = _Stats()
        if round_timeout is not None and not round_timeout > 0:
            raise ConfigError("round_timeout must be a positive number of seconds or None")
        self.round_timeout = round_timeout

    # -- the fixed part of the request ------------------------------------------------------------------
    def reserved(self, fixed_tokens: int) -> FreeMemory:
        """This memory for requests whose system prompt and tool schemas take ``fixed_tokens``: the messages
        get ``request_budget - fixed_tokens`` (this memory itself when that is already so).

        A shallow copy: cleaner, counter, archive, triggers and statistics are shared, but the budget, the
        cleaner's and the ``OverBudget`` triggers' bounds (where they hold this memory's budget or the
        request's; copied, not changed) and the default digest bound follow the messages' budget. Thread-safe:
        nothing is changed in place. When ``fixed_tokens`` alone reaches the request's budget no message list
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
        if self._default_digest:
            out.digest_tokens = max(100, int(DIGEST_SHARE * budget)) if budget is not None else 400
        out._rebase({self.budget, total}, budget)
        return out

    def _rebase(self, old: set[int | None], budget: int | None) -> None:
        """Point the cleaner's budget and the ``OverBudget`` triggers that hold one of ``old`` (the request's
        budget, or the messages' budget they were given) at the messages' ``budget`` (None: the budget's
        trigger goes). Works on copies: a cleaner or trigger may be shared with other memories."""
        if getattr(self.cleaner, "budget", None) in old - {None}:
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
        return self._view_tokens(message_views(messages))

    def _view_tokens(self, views: Sequence[MessageView]) -> list[int]:
        """Tokens of each message, as :meth:`count_messages` counts them (cached per text)."""
        count, rule = self.counter.count, self.image_rule
        return [sum(count(t) for t in counted_texts([v])) + views_media_tokens(self.counter, [v], rule)
                + MESSAGE_OVERHEAD_TOKENS for v in views]

    def count_text(self, text: str) -> int:
        return self.counter.count(text)

    @property
    def cache_ttl_s(self) -> float | None:
        """The prompt cache's TTL under cost-aware scheduling (None: off, or a cache that never expires)."""
        return None if self.cache is None else self.cache.ttl_s

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
        if self.max_freed_share is not None:
            return self.max_freed_share
        return float(getattr(self.cleaner, "max_freed_share", 0.9))

    # -- cleaning ---------------------------------------------------------------------------------------
    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
              idle_s: float | None = None, schedule: bool | None = None) -> CleanResult:
        """Run cleaning rounds on ``messages`` (OpenAI dicts or LangChain messages).

        ``schedule``: choose the edits by their cache cost (see the class docstring); by default a round that
        a trigger asked for is (the surfaces pass :meth:`check`'s reason as ``trigger``), one asked for by
        hand (``trigger="manual"``) applies every edit. Needs ``cache``. ``idle_s``: seconds since the
        conversation's last model call (see :meth:`check`); past the cache's TTL the round is free and keeps
        every edit its cleaner proposes."""
        return self._run(messages, None, trigger, tokens, None, idle_s, schedule)

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
                     idle_s: float | None = None, schedule: bool | None = None) -> CleanResult:
        """Async twin of :meth:`clean` (the cleaner's ``apropose`` does the I/O)."""
        return await self._arun(messages, None, trigger, tokens, None, idle_s, schedule)

    def clean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        """Run cleaning rounds on plain reasoning text."""
        return self._run(None, text, trigger, None, question)

    async def aclean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        return await self._arun(None, text, trigger, None, question)

    def maybe_clean(self, messages: Sequence[Any], *, tokens_at_last_clean: int = 0,
                    idle_s: float | None = None) -> CleanResult | None:
        """Clean when a trigger fires; None otherwise."""
        tokens = self.count_messages(messages)
        reason = self.check(tokens, tokens_at_last_clean, newest_text(messages), idle_s=idle_s)
        return None if reason is None else self.clean(messages, trigger=reason, tokens=tokens, idle_s=idle_s,
                                                      schedule=True)

    # The round loop is written once as a generator that yields "ask the cleaner" requests, so the sync
    # and async entry points share every line but the call itself.
    def _rounds(self, messages: Sequence[Any] | None, text: str | None, trigger: str, tokens: int | None,
                question: str | None, idle_s: float | None = None,
                schedule: bool | None = None):
        t0 = time.perf_counter()
        event = CleanEvent(trigger=trigger, cleaner=getattr(self.cleaner, "name", type(self.cleaner).__name__))
        measure = (lambda m, t: self.count_messages(m)) if messages is not None else (lambda m, t: self.count_text(t))
        before = tokens if tokens is not None else measure(messages, text)
        event.tokens_before = before
        current_messages, current_text = (list(messages) if messages is not None else None), text
        current = before
        last_outcome: Outcome | None = None
        for _ in range(self.max_rounds):
            context = (Context.from_messages(current_messages, protection=self.protection)
                       if current_messages is not None
                       else Context.from_text(current_text or "", question=question, protection=self.protection))
            proposal: Proposal | BaseException = yield context
            if isinstance(proposal, BaseException):
                event.error = f"{type(proposal).__name__}: {proposal}"
                self.stats.errors += 1
                self.stats.last_error = event.error
                warnings.warn(f"freemem: cleaner {event.cleaner} failed, round skipped ({event.error})",
                              RuntimeWarning, stacklevel=4)
                if logger.hasHandlers():  # else logging's last-resort handler would print the warning twice
                    logger.warning("cleaner %s failed, round skipped: %s", event.cleaner, event.error)
                break
            event.cleaner_latency_s += proposal.latency_s
            event.add_proposal(proposal)
            for key, value in proposal.usage.items():
                event.usage[key] = event.usage.get(key, 0) + int(value)
            if proposal.note:
                event.note = proposal.note
            outcome = apply_commands(context, proposal.commands, marker=self.marker,
                                     max_freed_share=self._share(), counter=self.counter,
                                     max_commands=getattr(self.cleaner, "max_commands", DEFAULT_MAX_COMMANDS),
                                     # the cleaner's reading of repeated anchors, in what its model was shown
                                     repeated=getattr(self.cleaner, "repeated", "reject"),
                                     shown=getattr(proposal, "shown", None))
            event.add_outcome(outcome)
            last_outcome = outcome
            if not outcome.applied:
                break
            if current_messages is not None:
                current_messages = outcome.messages
            else:
                current_text = outcome.text
            current = measure(current_messages, current_text)
            if self.budget is None or current <= self.budget:
                break
        if schedule is None:
            schedule = trigger != "manual"
        if current_text is not None and text is not None and current_text != text:
            event.cache = self._text_cache_record(text, current_text, before, current)
        if current_messages is not None and self.cache is not None and messages is not None and schedule:
            current_messages, current = self._schedule(list(messages), before, current_messages, current, event,
                                                       cold=self.cache_cold(idle_s))
            if event.cache.get("decision") != "applied" or event.cache.get("partial"):
                last_outcome = None  # the schedule kept none or only part of the rounds' edits
        elif current_messages is not None and self.fold and self.budget is not None and event.error is None:
            folded = self._fold_pass(current_messages, current, list(messages or []))
            if folded is not None:
                current_messages, record, current = folded
                event.folds.append(record)
        if self.summarizer is not None and current_messages is not None and event.folds:
            # The fold made by this clean gets a model digest; any failure keeps the extractive one.
            record = event.folds[-1]
            cap = record.digest_cap or self.digest_tokens  # the room the fold gave its digest
            try:
                # What the folded messages said before this clean's deletions (as the extractive digest reads).
                given = {v.id: messages[v.index] for v in message_views(messages or []) if v.id is not None}
                originals = fold_originals(record)
                source = [given.get(v.id, m) if v.id is not None else m
                          for v, m in zip(message_views(originals), originals)]
                prompt = summary_prompt(source, cap)
            except FoldMismatch as exc:
                response: Any = exc
            else:
                response = yield SummaryRequest(prompt, cap)
            current_messages, current = self._model_digest(current_messages, current, record, response, cap, event)
        if self.budget is not None and current > self.budget and event.error is None:
            event.note_unreachable_budget(context, self.budget, self.counter, fixed=self.fixed_tokens)
        event.tokens_after = current
        event.latency_s = time.perf_counter() - t0
        self.stats.rounds += 1
        self.stats.tokens_freed += max(0, before - current)
        self.stats.by_trigger[trigger] = self.stats.by_trigger.get(trigger, 0) + 1
        return CleanResult(messages=current_messages, text=current_text, event=event, outcome=last_outcome)

    def _model_digest(self, messages: list[Any], tokens: int, record: FoldRecord, response: Any, cap: int,
                      event: CleanEvent) -> tuple[list[Any], int]:
        """Put the summariser's answer in the fold message (header kept), or say why the extractive digest
        stays."""

        def keep(why: str) -> tuple[list[Any], int]:
            event.note = ((event.note + "; ") if event.note else "") + f"extractive digest kept: {why}"
            return messages, tokens

        if isinstance(response, BaseException):
            return keep(f"summarizer failed ({type(response).__name__}: {response})")
        body = answer_text(response).strip()
        if not body:
            return keep("the summarizer answered nothing")
        for key, value in model_usage(response).items():
            event.usage[key] = event.usage.get(key, 0) + int(value)
        header = record.digest.split("\n", 1)[0]
        text = header + "\n" + self.counter.truncate(body, max(1, cap - self.counter.count(header) - 1))
        new = replace_digest(messages, record, text)
        after = self.count_messages(new)
        if self.budget is not None and after > max(self.budget, tokens):
            return keep(f"the summary would put the context over the budget ({after} tokens)")
        record.digest = text
        record.digest_tokens = self.counter.count(text)
        event.note = ((event.note + "; ") if event.note else "") + "model digest"
        return new, after

    def _fold_pass(self, messages: list[Any], tokens: int, given: Sequence[Any] = (), *, force: bool = False,
                   target: float | None = None) -> tuple[list[Any], FoldRecord, int] | None:
        """Fold the oldest units when over budget, or when the residue of pruned old messages passes
        ``fold_share`` of the budget (or, with ``force``, whenever units may fold); None when no fold is due
        or possible.

        The newest ``fold_keep_units`` units stay unless the budget cannot be met without them (the budget
        is the hard bound; the kept units are a preference). ``given`` are the messages as the caller gave
        them, before this clean's deletions: the digest reads those."""
        assert self.budget is not None
        views = message_views(messages)
        plan = fold_units(views, self.protection, keep_units=self.fold_keep_units)
        sizes = self._view_tokens(views)
        probe = self._marker_probe()
        pruned = [probe is not None and any(probe in t for _n, t in v.fields) for v in views]

        def residue_of(units: Sequence[Any]) -> int:
            return sum(sizes[i] for u in units for i in range(u.start, u.end) if pruned[i] or u.fold)

        residue = residue_of(plan.units)
        share_limit = self.fold_share * self.budget
        if tokens <= self.budget and residue <= share_limit and not force:
            return None
        # A fold of conversation only (chat) keeps a larger digest: it is all that remains of the earlier days.
        chat = not any(v.role == "tool" or v.tool_calls for v in views)
        digest_tokens = self.chat_digest_tokens if chat and self.chat_digest_tokens else self.digest_tokens
        digest_cost = digest_tokens + MESSAGE_OVERHEAD_TOKENS
        if tokens > self.budget and self.fold_keep_units:
            reachable = tokens - sum(sizes[i] for u in plan.units for i in range(u.start, u.end)) + digest_cost
            if reachable > self.budget:
                plan = fold_units(views, self.protection, keep_units=0)
                residue = residue_of(plan.units)
        if not plan.units:
            return None
        goal, residue_goal = self.budget * (self.fold_target if target is None else target), share_limit / 2
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
        before = {v.id: v for v in message_views(given) if v.id is not None}
        new, record = make_fold(messages, views, plan, count, counter=self.counter,
                                digest_tokens=cap, sizes=sizes, recall=self.recall_hint, before=before)
        after = self.count_messages(new)
        if after >= tokens:
            return None  # the digest would cost what the fold frees
        return new, record, after

    # -- cost-aware scheduling ---------------------------------------------------------------------------
    def _schedule(self, given: list[Any], before: int, full: list[Any], full_tokens: int, event: CleanEvent,
                  *, cold: bool) -> tuple[list[Any], int]:
        """Choose what of this clean's edits to keep, by what each candidate costs under ``self.cache`` (see
        the class docstring); returns the messages and their tokens, and fills ``event.cache``."""
        assert self.cache is not None
        price = self.cache
        views = message_views(given)
        sizes = self._view_tokens(views)
        total = sum(sizes)
        growth = turn_tokens(views, sizes)
        forced = self.budget is not None and before > self.budget
        options: list[Option] = []
        edited = sorted({s.message_index for r in event.rounds for s in r if s.message_index is not None})
        if edited:
            gains = dict.fromkeys(edited, 0)
            full_sizes = self.message_tokens(full)
            for i in edited:
                gains[i] = sizes[i] - full_sizes[i]
            gain = 0
            for m in reversed(edited):  # the edits from message m on: the latest first change for that gain
                gain += gains[m]
                options.append(Option("delete", m, total - gain, start=m))
        if self.fold and self.budget is not None and event.error is None:
            folded = self._fold_pass(full, full_tokens, given, force=forced, target=self.low_water)
            if folded is not None:
                new, record, after = folded
                first = common_prefix(message_keys(given), message_keys(new))
                options.append(Option("fold", first, after, messages=new, record=record))
        plan = choose(options, sizes=sizes, price=price, budget=self.budget, forced=forced, cold=cold,
                      growth=growth, turns_so_far=sum(1 for v in views if v.role == "assistant"))
        record, chosen = plan.record, plan.chosen
        if chosen is None:
            if plan.note:
                event.note = ((event.note + "; ") if event.note else "") + plan.note
            event.rounds = []
            event.applied = 0
            event.cache = record
            return list(given), total
        if chosen.kind == "delete":
            messages = [given[i] if i < chosen.start else full[i] for i in range(len(given))]
            event.rounds = [kept for r in event.rounds
                            if (kept := [s for s in r if s.message_index is not None
                                         and s.message_index >= chosen.start])]
            event.applied = sum(len(r) for r in event.rounds)
            after = self.count_messages(messages) if chosen.start > edited[0] else full_tokens
        else:
            assert chosen.messages is not None and chosen.record is not None
            messages, after = chosen.messages, chosen.after
            event.folds.append(chosen.record)
        p = plan.prefix_tokens(chosen)
        record.update(decision="applied", kind=chosen.kind, partial=chosen.kind == "delete" and chosen.start > edited[0],
                      first_change=chosen.first, prefix_tokens=p,
                      rewrite_tokens=after - p, cost=round(plan.extra(replace(chosen, after=after)), 1))
        event.cache = record
        return messages, after

    def _text_cache_record(self, old: str, new: str, before: int, after: int) -> dict[str, Any]:
        """What an edit of plain text costs a server that continues from it (the reasoning loop): the text up
        to the first changed character stays cached, the rest is prefilled again."""
        first = 0
        limit = min(len(old), len(new))
        while first < limit and old[first] == new[first]:
            first += 1
        kept = self.count_text(old[:first]) if first else 0
        record: dict[str, Any] = {"price": None if self.cache is None else self.cache.name,
                                  "decision": "applied", "first_change_char": first, "prefix_tokens": kept,
                                  "rewrite_tokens": max(0, after - kept)}
        if self.cache is not None:
            record["cost"] = round(self.cache.write * (after - kept) - self.cache.read * (before - kept), 1)
        return record

    def _marker_probe(self) -> str | None:
        """A string every marker of this configuration starts with (to tell pruned messages), if any."""
        marker = self.marker if self.marker is not None else DEFAULT_MESSAGE_MARKER
        if callable(marker):
            return None
        head = marker.split("{", 1)[0]
        return head if len(head) >= 4 else None

    def _run(self, messages: Any, text: str | None, trigger: str, tokens: int | None,
             question: str | None, idle_s: float | None = None, schedule: bool | None = None) -> CleanResult:
        def summarize(request: SummaryRequest) -> Any:
            model = bound_summarizer(self.summarizer, request.max_tokens)
            return call_within(lambda: model.invoke(request.prompt), self.round_timeout, "freemem-summarizer",
                                lambda: summary_deadline_error(self.round_timeout))

        def propose(context: Context) -> Proposal | BaseException:
            return as_proposal(self.cleaner, propose_within(self.cleaner, context, self.round_timeout))

        return drive(self._rounds(messages, text, trigger, tokens, question, idle_s, schedule),
                     {SummaryRequest: summarize, Context: propose})

    async def _arun(self, messages: Any, text: str | None, trigger: str, tokens: int | None,
                    question: str | None = None, idle_s: float | None = None,
                    schedule: bool | None = None) -> CleanResult:
        # fail_open: any cleaner or summariser failure is sent to the round loop, which skips the round.
        async def summarize(request: SummaryRequest) -> Any:
            model = bound_summarizer(self.summarizer, request.max_tokens)
            call = (model.ainvoke(request.prompt) if hasattr(model, "ainvoke")
                    else asyncio.to_thread(model.invoke, request.prompt))
            try:
                return await self._within_round(call)
            except TimeoutError:
                return summary_deadline_error(self.round_timeout)

        async def propose(context: Context) -> Proposal | BaseException:
            try:
                answer = await self._within_round(self.cleaner.apropose(context))
            except TimeoutError:
                answer = cleaner_deadline_error(self.cleaner, self.round_timeout)
            return as_proposal(self.cleaner, answer)

        return await adrive(self._rounds(messages, text, trigger, tokens, question, idle_s, schedule),
                            {SummaryRequest: summarize, Context: propose}, fail_open=True)

    async def _within_round(self, call: Awaitable[Any]) -> Any:
        return await (call if self.round_timeout is None else asyncio.wait_for(call, self.round_timeout))
