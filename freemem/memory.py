"""FreeMemory: the one engine behind every surface — step → measure → maybe clean → persist.

It holds the configuration (cleaner, token counter, triggers, protections, marker, share cap) and runs one
cleaning round on a message list or a text: measure, ask the cleaner, apply the commands safely, measure
again, and describe the round in a :class:`~freemem.ledger.CleanEvent`. Persisting is the caller's job (the
LangGraph middleware writes the pruned messages into graph state; an archive keeps the removed spans).

A cleaner that fails costs one skipped round, a warning and a counted error — never the caller's turn
(fail open for the agent, fail closed for the edit).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.apply import DEFAULT_MAX_COMMANDS, DEFAULT_MESSAGE_MARKER, Marker, Outcome, apply_commands
from freemem.cleaners.base import Cleaner, Proposal
from freemem.commands import Command
from freemem.context import MESSAGE_OVERHEAD_TOKENS, Context, MessageView, Protection, counted_texts, message_views
from freemem.errors import CleanerError, CleanerTimeout, ConfigError
from freemem.folding import FoldRecord, fold_units, make_fold
from freemem.ledger import CleanEvent
from freemem.policies.triggers import EveryNTokens, LoopDetected, OverBudget, Trigger, TriggerState
from freemem.tokens import CachedCounter, TokenCounter, get_counter

__all__ = ["CleanResult", "FreeMemory", "MESSAGE_OVERHEAD_TOKENS"]

logger = logging.getLogger("freemem")



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
            removed spans and folded messages, e.g. :class:`freemem.archive.InMemoryArchive` or
            ``freemem.redis.RedisArchive``. With an archive, an edit is persisted only once its record is
            stored (fail closed for the edit).
        fold: fold whole units of old messages into one fold message (:mod:`freemem.folding`) when
            deletions cannot meet the budget, or when what deletions left of old messages (headers, markers,
            excerpts, protected arguments) passes ``fold_share`` of the budget. Needs a ``budget``.
        fold_share: see ``fold``; a fold then goes on until that residue is under half of it.
        fold_target: a fold brings the context down to this share of the budget (room for the next steps,
            so folds are rare).
        fold_keep_units: the newest units (human messages; assistant messages with their tool results)
            that never fold.
        digest_tokens: the bound on a fold message's digest.
        round_timeout: seconds one cleaner call may take (None: no bound). A cleaner still busy then is
            abandoned (a sync ``propose`` runs in a worker thread for this; ``apropose`` is cancelled) and
            the round fails open: a ``RuntimeWarning``, the event's ``error`` set, the state unchanged.
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
        digest_tokens: int = 400,
        round_timeout: float | None = 660.0,
    ) -> None:
        if budget is not None and budget <= 0:
            raise ConfigError("budget must be a positive number of tokens")
        if max_rounds < 1:
            raise ConfigError("max_rounds must be at least 1")
        if not 0 < fold_share <= 1 or not 0 < fold_target <= 1:
            raise ConfigError("fold_share and fold_target must be in (0, 1]")
        if fold_keep_units < 0 or digest_tokens < 16:
            raise ConfigError("fold_keep_units must be >= 0 and digest_tokens >= 16")
        base = get_counter(counter) if isinstance(counter, str) else counter
        self.counter: CachedCounter = base if isinstance(base, CachedCounter) else CachedCounter(base)
        if cleaner is None:
            from freemem.cleaners.heuristic import HeuristicCleaner

            # With folds, whole old turns go as units: budget fitting then shrinks only tool output and
            # leaves conversation text verbatim (the newest turns matter most; folds take the oldest).
            roles = ("tool",) if fold and budget is not None else ("tool", "assistant", "user", "human", "text")
            # Folds make room for the next steps, so rounds need not cut as deep (0.9 of the budget, not 0.8).
            target = 0.9 if fold and budget is not None else 0.8
            cleaner = HeuristicCleaner(budget=budget, counter=self.counter, fit_roles=roles, target=target)
        self.cleaner = cleaner
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

    # -- measuring --------------------------------------------------------------------------------------
    def count_messages(self, messages: Sequence[Any]) -> int:
        """Tokens of a message list: each text field, tool-call arguments and names, plus a per-message
        overhead. Cached per text, so a new turn costs O(new tokens)."""
        texts = counted_texts(message_views(messages))
        return self.counter.count_texts(texts) + MESSAGE_OVERHEAD_TOKENS * len(messages)

    #: The policy protocol's name for :meth:`count_messages` (see :class:`freemem.policy.MemoryPolicy`).
    def count(self, messages: Sequence[Any]) -> int:
        return self.count_messages(messages)

    def _view_tokens(self, views: Sequence[MessageView]) -> list[int]:
        """Tokens of each message, as :meth:`count_messages` counts them (cached per text)."""
        count = self.counter.count
        return [sum(count(t) for t in counted_texts([v])) + MESSAGE_OVERHEAD_TOKENS for v in views]

    def count_text(self, text: str) -> int:
        return self.counter.count(text)

    def check(self, tokens: int, tokens_at_last_clean: int, newest_text: str = "") -> str | None:
        """The first trigger that fires, as a reason, or None."""
        state = TriggerState(tokens=tokens, tokens_at_last_clean=tokens_at_last_clean, newest_text=newest_text)
        for trigger in self.triggers:
            reason = trigger.check(state)
            if reason:
                return reason
        return None

    def _share(self) -> float:
        if self.max_freed_share is not None:
            return self.max_freed_share
        return float(getattr(self.cleaner, "max_freed_share", 0.9))

    # -- cleaning ---------------------------------------------------------------------------------------
    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None) -> CleanResult:
        """Run cleaning rounds on ``messages`` (OpenAI dicts or LangChain messages)."""
        return self._run(messages, None, trigger, tokens, None)

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual",
                     tokens: int | None = None) -> CleanResult:
        """Async twin of :meth:`clean` (the cleaner's ``apropose`` does the I/O)."""
        return await self._arun(messages, None, trigger, tokens)

    def clean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        """Run cleaning rounds on plain reasoning text."""
        return self._run(None, text, trigger, None, question)

    async def aclean_text(self, text: str, *, question: str | None = None, trigger: str = "manual") -> CleanResult:
        return await self._arun(None, text, trigger, None, question)

    def maybe_clean(self, messages: Sequence[Any], *, tokens_at_last_clean: int = 0) -> CleanResult | None:
        """Clean when a trigger fires; None otherwise."""
        tokens = self.count_messages(messages)
        reason = self.check(tokens, tokens_at_last_clean, _newest_text(messages))
        return None if reason is None else self.clean(messages, trigger=reason, tokens=tokens)

    # The round loop is written once as a generator that yields "ask the cleaner" requests, so the sync
    # and async entry points share every line but the call itself.
    def _rounds(self, messages: Sequence[Any] | None, text: str | None, trigger: str, tokens: int | None,
                question: str | None):  # noqa: ANN202 - generator protocol
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
                                     max_commands=getattr(self.cleaner, "max_commands", DEFAULT_MAX_COMMANDS))
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
        if current_messages is not None and self.fold and self.budget is not None and event.error is None:
            folded = self._fold_pass(current_messages, current, list(messages or []))
            if folded is not None:
                current_messages, record, current = folded
                event.folds.append(record)
        if self.budget is not None and current > self.budget and event.error is None:
            event.note_unreachable_budget(context, self.budget, self.counter)
        event.tokens_after = current
        event.latency_s = time.perf_counter() - t0
        self.stats.rounds += 1
        self.stats.tokens_freed += max(0, before - current)
        self.stats.by_trigger[trigger] = self.stats.by_trigger.get(trigger, 0) + 1
        return CleanResult(messages=current_messages, text=current_text, event=event, outcome=last_outcome)

    def _fold_pass(self, messages: list[Any], tokens: int, given: Sequence[Any] = ()
                   ) -> tuple[list[Any], FoldRecord, int] | None:
        """Fold the oldest units when over budget, or when the residue of pruned old messages passes
        ``fold_share`` of the budget; None when no fold is due or possible.

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
        if tokens <= self.budget and residue <= share_limit:
            return None
        digest_cost = self.digest_tokens + MESSAGE_OVERHEAD_TOKENS
        if tokens > self.budget and self.fold_keep_units:
            reachable = tokens - sum(sizes[i] for u in plan.units for i in range(u.start, u.end)) + digest_cost
            if reachable > self.budget:
                plan = fold_units(views, self.protection, keep_units=0)
                residue = residue_of(plan.units)
        if not plan.units:
            return None
        goal, residue_goal = self.budget * self.fold_target, share_limit / 2
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
        before = {v.id: v for v in message_views(given) if v.id is not None}
        new, record = make_fold(messages, views, plan, count, counter=self.counter,
                                digest_tokens=self.digest_tokens, sizes=sizes, recall=self.recall_hint,
                                before=before)
        after = self.count_messages(new)
        if after >= tokens:
            return None  # the digest would cost what the fold frees
        return new, record, after

    def _marker_probe(self) -> str | None:
        """A string every marker of this configuration starts with (to tell pruned messages), if any."""
        marker = self.marker if self.marker is not None else DEFAULT_MESSAGE_MARKER
        if callable(marker):
            return None
        head = marker.split("{", 1)[0]
        return head if len(head) >= 4 else None

    def _run(self, messages: Any, text: str | None, trigger: str, tokens: int | None,
             question: str | None) -> CleanResult:
        gen = self._rounds(messages, text, trigger, tokens, question)
        try:
            context = next(gen)
            while True:
                answer: Any = _propose_within(self.cleaner, context, self.round_timeout)
                context = gen.send(_as_proposal(self.cleaner, answer))
        except StopIteration as stop:
            return stop.value

    async def _arun(self, messages: Any, text: str | None, trigger: str, tokens: int | None,
                    question: str | None = None) -> CleanResult:
        gen = self._rounds(messages, text, trigger, tokens, question)
        try:
            context = next(gen)
            while True:
                try:
                    if self.round_timeout is None:
                        answer: Any = await self.cleaner.apropose(context)
                    else:
                        answer = await asyncio.wait_for(self.cleaner.apropose(context), self.round_timeout)
                except asyncio.TimeoutError:
                    answer = _deadline_error(self.cleaner, self.round_timeout)
                except Exception as exc:  # noqa: BLE001 - fail open: any cleaner failure skips the round
                    answer = exc
                context = gen.send(_as_proposal(self.cleaner, answer))
        except StopIteration as stop:
            return stop.value


def _cleaner_name(cleaner: Any) -> str:
    return str(getattr(cleaner, "name", type(cleaner).__name__))


def _deadline_error(cleaner: Any, seconds: float | None) -> CleanerTimeout:
    return CleanerTimeout(f"cleaner {_cleaner_name(cleaner)} exceeded {seconds:g} s (round_timeout); "
                          "abandoned")


def _propose_within(cleaner: Any, context: Context, seconds: float | None) -> Any:
    """``cleaner.propose(context)``, or the exception it raised, or a :class:`CleanerTimeout` once ``seconds``
    pass. With a deadline the call runs in a daemon worker thread (in a copy of the caller's contextvars), so a
    hung cleaner is left behind rather than waited for; Python cannot kill a thread, and its late answer is
    dropped."""
    if seconds is None:
        try:
            return cleaner.propose(context)
        except Exception as exc:  # noqa: BLE001 - fail open: any cleaner failure skips the round
            return exc
    box: list[Any] = []
    done = threading.Event()
    run_in_context = contextvars.copy_context().run

    def call() -> None:
        try:
            box.append(run_in_context(cleaner.propose, context))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=call, name=f"freemem-cleaner-{_cleaner_name(cleaner)}", daemon=True)
    worker.start()
    if not done.wait(seconds):
        return _deadline_error(cleaner, seconds)
    answer = box[0]
    if isinstance(answer, BaseException) and not isinstance(answer, Exception):
        raise answer  # KeyboardInterrupt, SystemExit: not a cleaner failure
    return answer


def _as_proposal(cleaner: Any, answer: Any) -> Proposal | BaseException:
    """``answer`` as a :class:`Proposal` the round can use, or an error saying why it is not one.

    A cleaner returning garbage fails its round like a cleaner that raises (a warning, the event's error);
    a plain list of :class:`Command` is accepted as a proposal."""
    if isinstance(answer, BaseException):
        return answer
    name = _cleaner_name(cleaner)
    if isinstance(answer, list) and all(isinstance(c, Command) for c in answer):
        return Proposal(commands=answer, cleaner=name)
    if not isinstance(answer, Proposal):
        return CleanerError(f"cleaner {name} returned {type(answer).__name__}, not a Proposal or a list of Command")
    if not isinstance(answer.commands, list) or not all(isinstance(c, Command) for c in answer.commands):
        bad = answer.commands if not isinstance(answer.commands, list) else next(
            c for c in answer.commands if not isinstance(c, Command))
        return CleanerError(f"cleaner {name} proposed {type(bad).__name__} where a Command belongs")
    if not isinstance(answer.latency_s, (int, float)) or not isinstance(answer.usage, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in answer.usage.values()):
        return CleanerError(f"cleaner {name} returned a Proposal whose latency_s or usage is not numeric")
    if answer.note is not None and not isinstance(answer.note, str):
        return CleanerError(f"cleaner {name} returned a Proposal whose note is not a string")
    return answer


def _newest_text(messages: Sequence[Any]) -> str:
    """The newest assistant output (content and reasoning), where loops show first."""
    if not messages:
        return ""
    for view in reversed(message_views(messages[-4:])):
        if view.role == "assistant":
            return "\n".join(text for _name, text in view.fields)
    return ""
