"""The one cleaning step every LangGraph surface shares: measure → maybe clean → state update.

:class:`CleanStep` runs a trigger check on a message list and, when a trigger fires, a cleaning round, and turns
the result into a LangGraph state update that *persists* the pruned messages: edited messages are returned
with their original ids, so the ``add_messages`` reducer replaces them in place. Deletion rounds never remove a
message; a *fold* does (:mod:`freemem.core.folding`): then, and when some messages in state have no id (a custom
reducer that does not assign them), the update rewrites the list whole (``RemoveMessage(REMOVE_ALL_MESSAGES)``
followed by every message, ids unchanged): ``add_messages`` would append the fold message's new id at the end
instead of where the folded messages were.

With an archive, the round's record is stored *before* the update is returned; when the archive fails, the
update carries no edit (fail closed: no pruning persisted without its record), the ledger event says why, and
a warning is issued.

Any failure inside a step — a cleaner that raises (FreeMemory already turns that into ``event.error``), an
unreadable message, a broken archive — is fail-open for the turn: a warning, a counted error, no edit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired

from langchain_core.messages import AnyMessage, BaseMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from typing_extensions import TypedDict

import freemem.lc  # noqa: F401 - registers the LangChain reviver: folds in graph state restore exactly
from freemem.archives import DEFAULT_THREAD, ArchiveFailure, apersist_event, persist_event
from freemem.core.ledger import CleanEvent
from freemem.core.views import read_once
from freemem.memory import CleanResult
from freemem.messages import newest_text
from freemem.policy import MemoryPolicy

__all__ = [
    "LAST_CALL_KEY",
    "LEDGER_KEY",
    "LEDGER_MAX_EVENTS",
    "TOKENS_KEY",
    "CleanStep",
    "FreeMemoryFields",
    "StepStats",
    "bounded_ledger",
    "checkpoints_of",
    "latest_time",
    "thread_id_of",
]

logger = logging.getLogger("freemem.langgraph")

#: State key holding the ledger: JSON-plain event summaries (no removed text), newest last.
LEDGER_KEY = "freemem_ledger"
#: State key holding the context size (tokens) right after the last clean, for the every-N-tokens trigger.
TOKENS_KEY = "freemem_tokens_at_last_clean"
#: State key holding when the thread's last model call was made (seconds since the epoch): a memory that
#: schedules rounds by prompt-cache cost reads the idle gap from it (past the cache's TTL a round is free).
LAST_CALL_KEY = "freemem_last_call_at"
#: How many step times :class:`StepStats` keeps (the newest).
STEP_HISTORY = 10_000
#: How many ledger events graph state keeps (older ones live in the archive, when there is one).
LEDGER_MAX_EVENTS = 100


def bounded_ledger(left: list[dict[str, Any]] | None, right: list[dict[str, Any]] | dict[str, Any] | None
                   ) -> list[dict[str, Any]]:
    """Reducer for :data:`LEDGER_KEY`: append the new events, keep the newest :data:`LEDGER_MAX_EVENTS`.

    An update of ``None`` leaves the ledger as is; a single dict is appended as one event.
    """
    out = list(left or [])
    if right is None:
        return out
    if isinstance(right, dict):
        out.append(right)
    else:
        out.extend(right)
    return out[-LEDGER_MAX_EVENTS:]


def last_value(left: int | None, right: int | None) -> int:
    """Reducer for :data:`TOKENS_KEY`: the newest value wins (several writers in one step are fine)."""
    return int(right if right is not None else (left or 0))


def latest_time(left: float | None, right: float | None) -> float | None:
    """Reducer for :data:`LAST_CALL_KEY`: the later time wins (None leaves it as is)."""
    if right is None:
        return left
    return float(right) if left is None else max(float(left), float(right))


class FreeMemoryFields(TypedDict, total=False):
    """The state fields freemem writes, to mix into your own state schema::

        class State(MessagesState, FreeMemoryFields):
            ...

    All are JSON-plain, so any checkpointer stores them; the ledger is bounded. ``freemem_last_call_at`` is
    written on every step of a memory that schedules by prompt-cache cost (the time of the model call that
    follows the step).
    """

    freemem_ledger: NotRequired[Annotated[list[dict[str, Any]], bounded_ledger]]
    freemem_tokens_at_last_clean: NotRequired[Annotated[int, last_value]]
    freemem_last_call_at: NotRequired[Annotated[float | None, latest_time]]


@dataclass
class StepStats:
    """What a surface's steps cost and did, since it was built (process-local counters).

    ``time_s`` is the wall time spent inside freemem (counting, trigger checks, cleaning, building the
    update, archiving), i.e. the overhead a step adds to the agent, excluding model calls.
    """

    steps: int = 0
    cleans: int = 0
    changed: int = 0
    errors: int = 0
    tokens_freed: int = 0
    time_s: float = 0.0
    last_step_s: float = 0.0
    last_tokens: int = 0
    last_error: str | None = None
    #: The newest :data:`STEP_HISTORY` step times (bounded: a process serving an agent for days must not grow).
    step_times_s: deque[float] = field(default_factory=lambda: deque(maxlen=STEP_HISTORY))
    #: Parallel to ``step_times_s``: whether that step ran a cleaning round.
    step_cleaned: deque[bool] = field(default_factory=lambda: deque(maxlen=STEP_HISTORY))

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "cleans": self.cleans,
            "changed": self.changed,
            "errors": self.errors,
            "tokens_freed": self.tokens_freed,
            "time_s": round(self.time_s, 6),
            "mean_step_ms": round(1000 * self.time_s / self.steps, 4) if self.steps else 0.0,
            "last_error": self.last_error,
        }


def thread_id_of(config: Any = None, runtime: Any = None) -> str | None:
    """The thread id of the running graph: from the runtime's execution info, the given config, or the
    config of the current LangGraph task (None outside a graph or without a thread)."""
    info = getattr(runtime, "execution_info", None)
    tid = getattr(info, "thread_id", None)
    if tid:
        return str(tid)
    if config is None:
        try:
            from langgraph.config import get_config

            config = get_config()
        except Exception:  # noqa: BLE001 - outside a runnable context
            return None
    tid = ((config or {}).get("configurable") or {}).get("thread_id")
    return None if tid is None else str(tid)




def checkpoints_of(config: Any = None) -> dict[str, str] | None:
    """The ids of the checkpoints the running step executes on, by checkpoint namespace (``""``: the root
    graph; a subgraph's own namespace besides): LangGraph's ``checkpoint_map`` in the task's config, from the
    given config or the current task's. None outside a graph or without a checkpointer. The step's result
    becomes a child of that checkpoint, so an archived event that names it can be placed on its branch."""
    if config is None:
        try:
            from langgraph.config import get_config

            config = get_config()
        except Exception:  # noqa: BLE001 - outside a runnable context
            return None
    mapping = ((config or {}).get("configurable") or {}).get("checkpoint_map")
    if not isinstance(mapping, Mapping):
        return None
    found = {str(ns): str(cid) for ns, cid in mapping.items() if cid}
    return found or None


_THREADLESS_WARNING = (
    "freemem: this graph runs without a thread_id (config['configurable']['thread_id']) while the memory has an "
    "archive: every such invocation records into the archive's thread {thread!r}, so `recall` in one "
    "invocation may return another invocation's private tool output and a restore mixes them. Pass a "
    "thread_id per conversation."
)


def _with_ids(messages: Sequence[Any]) -> tuple[list[Any], bool]:
    """The messages, each with an id (copies get fresh ones); True when some had none."""
    missing = False
    out: list[Any] = []
    for msg in messages:
        if isinstance(msg, BaseMessage):
            if msg.id is None:
                missing = True
                msg = msg.model_copy(update={"id": str(uuid.uuid4())})
        elif isinstance(msg, dict):
            if msg.get("id") is None:
                missing = True
                msg = {**msg, "id": str(uuid.uuid4())}
        out.append(msg)
    return out, missing


@dataclass
class _Plan:
    """A step between measuring and cleaning."""

    #: The memory this step runs with: the surface's, with the messages' budget left by the request's fixed
    #: part (:meth:`FreeMemory.reserved <freemem.FreeMemory.reserved>`).
    memory: MemoryPolicy
    messages: list[Any]
    rewrite: bool
    tokens: int
    reason: str | None
    t0: float
    #: Seconds since the thread's last model call (None: unknown, or the memory does not use it).
    idle_s: float | None = None
    #: This step's time, recorded as the thread's last model call (None: the memory does not use it).
    now: float | None = None
    #: A ledger note to write once: the request's fixed part alone passes the budget.
    notice: str | None = None


class _ThreadMarks:
    """Process-local values per thread (``tokens at last clean``, the last model call's time), for surfaces
    that cannot keep them in graph state. Bounded: the least recently set thread goes first."""

    def __init__(self, max_threads: int = 10_000, default: Any = 0) -> None:
        self._marks: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_threads
        self._default = default

    def get(self, thread: str | None) -> Any:
        with self._lock:
            return self._marks.get(thread or "", self._default)

    def set(self, thread: str | None, tokens: Any) -> None:
        with self._lock:
            self._marks[thread or ""] = tokens
            self._marks.move_to_end(thread or "")
            while len(self._marks) > self._max:
                self._marks.popitem(last=False)


class CleanStep:
    """Measure a state's messages, maybe clean them, and build the state update (sync and async).

    Args:
        memory: any :class:`~freemem.policy.MemoryPolicy`: :class:`~freemem.FreeMemory` (cleaner, counter,
            triggers, archive) or ``SummarizeMemory``.
        state_fields: write :data:`LEDGER_KEY` / :data:`TOKENS_KEY` into the update (the graph's state schema
            must have them, e.g. via :class:`FreeMemoryFields`). When False, the tokens-at-last-clean mark is
            kept in process memory per thread instead, and no ledger is written to state.
        messages_key: the state key holding the message list.
    """

    def __init__(self, memory: MemoryPolicy, *, state_fields: bool = True, messages_key: str = "messages") -> None:
        self.memory = memory
        self.state_fields = state_fields
        self.messages_key = messages_key
        self.stats = StepStats()
        self._marks = _ThreadMarks()
        self._calls = _ThreadMarks(default=None)
        # Threads already told (a warning, a ledger note) that their budget cannot be met: by the request's
        # fixed part alone, or by it with the protected messages.
        self._told_fixed = _ThreadMarks(default=False)
        self._told_over = _ThreadMarks(default=False)
        # A memory that schedules by prompt-cache cost declares its cache's TTL (FreeMemory with a cache): the
        # step then measures the idle gap since the thread's last model call (MemoryPolicy's ``idle_s``).
        self._idle = getattr(memory, "cache_ttl_s", None) is not None
        self._warned_threadless = False

    @property
    def uses_idle(self) -> bool:
        """Whether the memory schedules by prompt-cache cost and takes the idle gap since the last model call."""
        return self._idle

    def clock(self) -> float:
        """Now, by the memory's clock (``CachePolicy(clock=...)``), else ``time.time()``."""
        clock = getattr(self.memory, "clock", None)
        return float(clock() if callable(clock) else time.time())

    def memory_for(self, fixed: int | None) -> MemoryPolicy:
        """The memory for a request whose system prompt and tool schemas take ``fixed`` tokens (None:
        unknown, the memory as configured): its budget is what the messages get."""
        reserved = getattr(self.memory, "reserved", None)
        if fixed is None or not callable(reserved):
            return self.memory
        return reserved(fixed)  # type: ignore[no-any-return]

    def budget_notice(self, memory: MemoryPolicy, fixed: int | None, thread: str | None) -> str | None:
        """Once per thread: the text saying that the request's fixed part alone passes the budget (warned
        too), else None."""
        total = getattr(self.memory, "request_budget", None)
        if fixed is None or total is None or fixed < total or self._told_fixed.get(thread):
            return None
        self._told_fixed.set(thread, True)
        note = (f"the system prompt and tool schemas alone take {fixed:,} tokens, over the budget of {total:,}: "
                "no cleaning can meet it, so rounds for the budget are off for this thread (shorten the "
                "prompt or the tools, or raise the budget)")
        warnings.warn(f"freemem: {note}", RuntimeWarning, stacklevel=4)
        logger.warning("%s", note)
        return note

    def _tell_unreachable(self, plan: _Plan, result: CleanResult, thread: str | None) -> None:
        """Once per thread: warn that a round ended over the budget (what it may not touch is too big)."""
        budget = getattr(plan.memory, "budget", None)
        event = result.event
        if budget is None or event.error or event.tokens_after <= budget or self._told_over.get(thread):
            return
        self._told_over.set(thread, True)
        fixed = int(getattr(plan.memory, "fixed_tokens", 0) or 0)
        note = event.note or "the cleaner could not free enough"
        warnings.warn(f"freemem: the request stays over its budget of {budget + fixed:,} tokens after cleaning "
                      f"(system prompt and tools {fixed:,} + messages {event.tokens_after:,}): {note}",
                      RuntimeWarning, stacklevel=4)

    # -- the two halves shared by sync and async --------------------------------------------------------
    def _plan(self, state: Any, thread: str | None, fixed: int | None = None) -> _Plan | None:
        t0 = time.perf_counter()
        messages = _get(state, self.messages_key) or []
        if not messages:
            return None
        memory = self.memory_for(fixed)
        notice = self.budget_notice(memory, fixed, thread)
        msgs, rewrite = _with_ids(messages)
        tokens = memory.count(msgs)
        if self.state_fields:
            last = int(_get(state, TOKENS_KEY) or 0)
        else:
            last = self._marks.get(thread)
        if not self._idle:
            return _Plan(memory, msgs, rewrite, tokens, memory.check(tokens, last, newest_text(msgs)), t0,
                         notice=notice)
        now = self.clock()
        called = _get(state, LAST_CALL_KEY) if self.state_fields else None
        if called is None:
            called = self._calls.get(thread)
        idle = None if called is None else max(0.0, now - float(called))
        reason = memory.check(tokens, last, newest_text(msgs), idle_s=idle)
        return _Plan(memory, msgs, rewrite, tokens, reason, t0, idle_s=idle, now=now, notice=notice)

    def _stamp(self, plan: _Plan | None, update: dict[str, Any] | None, thread: str | None
               ) -> dict[str, Any] | None:
        """Record this step's time as the thread's last model call (the call follows the step), and write a
        pending notice into the ledger."""
        if plan is not None and plan.notice is not None and self.state_fields:
            event = CleanEvent(trigger="budget", cleaner="none", note=plan.notice)
            event.tokens_before = event.tokens_after = plan.tokens
            update = dict(update or {})
            update[LEDGER_KEY] = [*(update.get(LEDGER_KEY) or []), event.to_dict(spans=False)]
        if plan is None or plan.now is None:
            return update
        self._calls.set(thread, plan.now)
        if not self.state_fields:
            return update
        out = dict(update or {})
        out[LAST_CALL_KEY] = plan.now
        return out

    def _clean(self, plan: _Plan) -> CleanResult:
        return plan.memory.clean(plan.messages, trigger=plan.reason or "manual", tokens=plan.tokens,
                                 idle_s=plan.idle_s)

    async def _aclean(self, plan: _Plan) -> CleanResult:
        return await plan.memory.aclean(plan.messages, trigger=plan.reason or "manual", tokens=plan.tokens,
                                        idle_s=plan.idle_s)

    def _update(self, plan: _Plan, result: CleanResult, thread: str | None) -> dict[str, Any]:
        event = result.event
        update: dict[str, Any] = {}
        self._tell_unreachable(plan, result, thread)
        if result.changed and result.messages is not None:
            if plan.rewrite or result.folded:
                # A fold removes messages and puts its fold message where they were; add_messages would
                # append a new id at the end, so the list is written whole (ids unchanged but the fold's).
                update[self.messages_key] = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *result.messages]
            else:
                update[self.messages_key] = [new for old, new in zip(plan.messages, result.messages)
                                             if new is not old]
        if self.state_fields:
            update[LEDGER_KEY] = [event.to_dict(spans=False)]
            update[TOKENS_KEY] = event.tokens_after
        else:
            self._marks.set(thread, event.tokens_after)
        self.stats.cleans += 1
        if result.changed and result.messages is not None:
            self.stats.changed += 1
            self.stats.tokens_freed += max(0, event.tokens_freed)
        if event.error:
            self._count_error(event.error)
        return update

    def _finish(self, plan: _Plan | None, t_start: float) -> None:
        elapsed = time.perf_counter() - t_start
        self.stats.steps += 1
        self.stats.time_s += elapsed
        self.stats.last_step_s = elapsed
        self.stats.step_times_s.append(elapsed)
        self.stats.step_cleaned.append(plan is not None and plan.reason is not None)
        if plan is not None:
            self.stats.last_tokens = plan.tokens

    def _check_thread(self, thread: str | None) -> None:
        """Warn once (per step object) when there is an archive but no thread id: every invocation then
        records into one archive thread."""
        if thread is None and not self._warned_threadless and getattr(self.memory, "archive", None) is not None:
            self._warned_threadless = True
            message = _THREADLESS_WARNING.format(thread=DEFAULT_THREAD)
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            logger.warning("%s", message)

    @staticmethod
    def _archive_target(checkpoint: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """The checkpoint ids to record with an event: the given ones, else the running task's."""
        return checkpoint if checkpoint is not None else checkpoints_of()

    def _count_error(self, error: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = error

    def _fail(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self._count_error(message)
        warnings.warn(f"freemem: cleaning step skipped ({message})", RuntimeWarning, stacklevel=3)
        logger.warning("cleaning step skipped: %s", message, exc_info=exc)

    # -- sync -------------------------------------------------------------------------------------------
    def run(self, state: Any, *, thread: str | None = None, checkpoint: Mapping[str, str] | None = None,
            fixed: int | None = None) -> dict[str, Any] | None:
        """One step: None when no trigger fires (or on failure), else the state update. ``checkpoint``: the
        ids of the checkpoints the step runs on, by namespace (default: the running LangGraph task's), stored
        with the archived event so a restore can tell its branch.

        ``fixed``: the tokens of the request outside the messages (system prompt, tool schemas; see
        :mod:`freemem.langgraph.request`), so the messages get what the budget leaves (None: the memory's own
        ``fixed_tokens``). With a memory that schedules by prompt-cache cost and ``state_fields``, every
        step's update holds :data:`LAST_CALL_KEY` (only that, when no trigger fires)."""
        t_start = time.perf_counter()
        plan = None
        self._check_thread(thread)
        with read_once():  # one step reads each message into a view once
            try:
                plan = self._plan(state, thread, fixed)
                if plan is None or plan.reason is None:
                    return self._stamp(plan, None, thread)
                target = self._archive_target(checkpoint)
                result = self._clean(plan)
                if result.changed and (failure := persist_event(plan.memory.archive, thread, result.event,
                                                                checkpoint=target)):
                    result = self._unpersisted(plan, result, failure)
                return self._stamp(plan, self._update(plan, result, thread), thread)
            except Exception as exc:  # noqa: BLE001 - fail open: the agent's turn goes on
                self._fail(exc)
                return None
            finally:
                self._finish(plan, t_start)

    # -- one model request ------------------------------------------------------------------------------
    def _request_plan(self, messages: Sequence[Any], fixed: int, thread: str | None) -> _Plan | None:
        memory = self.memory_for(fixed)
        budget = getattr(memory, "budget", None)
        if budget is None or not messages:
            return None
        msgs, _ = _with_ids(messages)
        tokens = memory.count(msgs)
        if tokens <= budget:
            return None
        reason = f"request over budget ({tokens:,} + {fixed:,} fixed > {budget + fixed:,})"
        return _Plan(memory, msgs, False, tokens, reason, time.perf_counter())

    def _request_result(self, plan: _Plan, result: CleanResult, thread: str | None) -> list[Any] | None:
        self.stats.cleans += 1
        self._tell_unreachable(plan, result, thread)
        if result.event.error:
            self._count_error(result.event.error)
        if not result.changed or result.messages is None:
            return None
        self.stats.changed += 1
        self.stats.tokens_freed += max(0, result.event.tokens_freed)
        return list(result.messages)

    def fit_request(self, messages: Sequence[Any], *, fixed: int, thread: str | None = None) -> list[Any] | None:
        """The messages of one model request cleaned to fit the budget left by its ``fixed`` part, or None
        when they fit already (or the round changed nothing, or failed: fail open).

        For a request the step before it measured with a smaller fixed part (the first model call of a
        thread in this process, or a system prompt that grew): the pruned list goes to this call only, the
        round's record to the archive (markers stay recallable), and the state is pruned at the next step."""
        t_start = time.perf_counter()
        plan = None
        with read_once():  # one step reads each message into a view once
            try:
                plan = self._request_plan(messages, fixed, thread)
                if plan is None:
                    return None
                result = self._clean(plan)
                if result.changed and persist_event(plan.memory.archive, thread, result.event,
                                                    checkpoint=self._archive_target(None)):
                    return None
                return self._request_result(plan, result, thread)
            except Exception as exc:  # noqa: BLE001 - fail open: the model call goes on
                self._fail(exc)
                return None
            finally:
                if plan is not None:
                    self._finish(plan, t_start)

    async def afit_request(self, messages: Sequence[Any], *, fixed: int, thread: str | None = None
                           ) -> list[Any] | None:
        """Async twin of :meth:`fit_request`."""
        t_start = time.perf_counter()
        plan = None
        with read_once():  # one step reads each message into a view once
            try:
                plan = self._request_plan(messages, fixed, thread)
                if plan is None:
                    return None
                result = await self._aclean(plan)
                if result.changed and await apersist_event(plan.memory.archive, thread, result.event,
                                                           checkpoint=self._archive_target(None)):
                    return None
                return self._request_result(plan, result, thread)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
                return None
            finally:
                if plan is not None:
                    self._finish(plan, t_start)

    def _unpersisted(self, plan: _Plan, result: CleanResult, failure: ArchiveFailure) -> CleanResult:
        """The archive could not take the round's record (:func:`~freemem.archives.persist_event` warned):
        nothing is persisted (the removed text would be stored nowhere), the event says why, and the agent's
        turn goes on with the unpruned messages."""
        event = result.event
        event.error = failure.message
        event.tokens_after = plan.tokens
        return CleanResult(messages=None, text=None, event=event, outcome=None)

    # -- async ------------------------------------------------------------------------------------------
    async def arun(self, state: Any, *, thread: str | None = None, checkpoint: Mapping[str, str] | None = None,
                   fixed: int | None = None) -> dict[str, Any] | None:
        """Async twin of :meth:`run` (the cleaner's ``apropose`` and the archive's ``arecord`` do the I/O)."""
        t_start = time.perf_counter()
        plan = None
        self._check_thread(thread)
        with read_once():  # one step reads each message into a view once
            try:
                plan = self._plan(state, thread, fixed)
                if plan is None or plan.reason is None:
                    return self._stamp(plan, None, thread)
                target = self._archive_target(checkpoint)
                result = await self._aclean(plan)
                if result.changed and (failure := await apersist_event(plan.memory.archive, thread, result.event,
                                                                       checkpoint=target)):
                    result = self._unpersisted(plan, result, failure)
                return self._stamp(plan, self._update(plan, result, thread), thread)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
                return None
            finally:
                self._finish(plan, t_start)


def _get(state: Any, key: str) -> Any:
    if isinstance(state, dict):
        return state.get(key)
    return getattr(state, key, None)


def messages_of(state: Any, key: str = "messages") -> list[AnyMessage]:
    """The message list of a state (dict or object), or an empty list."""
    return list(_get(state, key) or [])
