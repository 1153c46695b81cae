"""The ``summarize`` policy for chat/tool transcripts: fold older turns into one summary message.

:class:`SummarizeMemory` keeps the leading system messages, the task and a recent tail verbatim and replaces
the turns between with one summary message (written by a chat model, or extractive without one); the cut never
separates a tool call from its result (zero pairing violations), and the folded originals go to the archive.
It takes the memory-policy protocol (count / check / clean / aclean), so every LangGraph surface runs it like
``FreeMemory``. Its sibling for reasoning models is :mod:`freemem.policies.inftythink`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from freemem.archives import ArchiveFailure, apersist_event, persist_event
from freemem.core.digest import FOLD_SUMMARY_SYSTEM, render_for_summary, summary_prompt
from freemem.core.errors import ConfigError
from freemem.core.folding import FoldRecord, fold_message, new_handle, plain_message
from freemem.core.ledger import CleanEvent
from freemem.core.views import count_messages, message_views
from freemem.driving import adrive, drive
from freemem.memory import CleanResult
from freemem.messages import answer_text, json_message, model_usage
from freemem.policies.calls import CallRecord, bind_max_tokens, prompt_tokens, tail_tokens
from freemem.tokens import TokenCounter, cached_counter

__all__ = ["FOLD_SYSTEM", "SUMMARY_PREFIX", "FoldResult", "SummarizeMemory", "archive_record"]

#: The fold instruction, kept under its old name (it lives in :mod:`freemem.core.digest`; this module's
#: ``SUMMARY_SYSTEM`` is InftyThink's segment summary, another prompt).
FOLD_SYSTEM = FOLD_SUMMARY_SYSTEM
SUMMARY_PREFIX = "[freemem summary of {n} earlier messages]\n"


@dataclass
class FoldResult:
    """One fold: the new message list, the messages it replaced (the originals, to archive), the ledger
    event, and the summarizer call (None when no model was asked)."""

    messages: list[Any]
    folded: list[Any]
    summary: str
    event: CleanEvent
    call: CallRecord | None = None
    #: Where the summary message sits in ``messages`` (the index of the first folded message).
    start: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.folded)


class SummarizeMemory:
    """Fold older turns of a transcript into one summary message (the ``summarize`` policy for messages).

    Kept verbatim: leading system messages, the first user message (the task), and a recent tail of at least
    ``keep_tokens`` tokens that starts at a user or assistant message — never at a tool message, so every
    tool call keeps its result and the result list stays valid (``pairing_violations`` is empty whenever it
    was before). Everything between is replaced by one user message ``[freemem summary of N earlier
    messages]`` written by ``summarizer`` (a LangChain chat model), or — with no model, or when it fails or
    answers nothing — by a deterministic extract (head and tail of the rendered messages) within the bound.
    A previous summary message is itself folded into the next one, so there is always at most one.

    Args:
        summarizer: chat model writing the summary; None for the extractive fallback only.
        budget: fold when the transcript is over this many tokens (default 16,000).
        keep_tokens: the recent tail kept verbatim (default: a quarter of the budget).
        summary_tokens: the bound on the summary (default 1,024).
        counter: token counter, object or name.
        archive: optional :class:`~freemem.archives.Archive` (e.g. :class:`~freemem.archives.InMemoryArchive`,
            ``freemem.redis.RedisArchive``); :meth:`fold` records the event with the folded originals under
            ``"folded"`` (thread ``"default"`` when none is named), and keeps no fold the archive refused.
    """

    def __init__(self, summarizer: Any = None, *, budget: int = 16_000, keep_tokens: int | None = None,
                 summary_tokens: int = 1024, counter: TokenCounter | str = "auto", archive: Any = None,
                 max_tokens_param: str | None = "max_tokens") -> None:
        if budget <= 0 or summary_tokens <= 0 or (keep_tokens is not None and keep_tokens < 0):
            raise ConfigError("budget and summary_tokens must be positive, keep_tokens non-negative")
        self.summarizer = summarizer
        self.budget = budget
        #: The whole request's budget; ``budget`` is the messages' share (see :meth:`reserved`).
        self.request_budget = budget
        self.fixed_tokens = 0
        self._budget_off = False
        self._default_keep = keep_tokens is None
        self.keep_tokens = budget // 4 if keep_tokens is None else keep_tokens
        self.summary_tokens = summary_tokens
        self.counter = cached_counter(counter)
        self.archive = archive
        self.max_tokens_param = max_tokens_param

    def reserved(self, fixed_tokens: int) -> SummarizeMemory:
        """This policy for requests whose system prompt and tool schemas take ``fixed_tokens``: it folds when
        the messages pass ``budget - fixed_tokens`` (a shallow copy; the default ``keep_tokens`` follows). When
        ``fixed_tokens`` alone reaches the budget no fold can meet it: the copy's :meth:`check` never fires
        (the surfaces warn once)."""
        if isinstance(fixed_tokens, bool) or not isinstance(fixed_tokens, int) or fixed_tokens < 0:
            raise ConfigError(f"fixed_tokens must be a non-negative int, got {fixed_tokens!r}")
        if fixed_tokens == self.fixed_tokens:
            return self
        out = copy.copy(self)
        out.fixed_tokens = fixed_tokens
        out.budget = max(1, self.request_budget - fixed_tokens)
        out._budget_off = fixed_tokens >= self.request_budget
        if self._default_keep:
            out.keep_tokens = out.budget // 4
        return out

    # -- planning ---------------------------------------------------------------------------------------
    def count(self, messages: Sequence[Any]) -> int:
        """Tokens of a message list (text fields, tool-call names and arguments, per-message overhead)."""
        return count_messages(self.counter, messages)

    def plan(self, messages: Sequence[Any]) -> tuple[int, int]:
        """``(start, end)``: the slice of ``messages`` to fold (empty when nothing can be folded)."""
        views = message_views(messages)
        start = 0
        while start < len(views) and views[start].role in ("system", "developer"):
            start += 1
        if start < len(views) and views[start].role == "user" and not _is_summary(views[start]):
            start += 1  # the task stays verbatim
        sizes = [self.count([m]) for m in messages]
        end = len(views) - 1  # the newest message always stays
        kept = sizes[end] if views else 0
        while end > start and kept < self.keep_tokens:
            end -= 1
            kept += sizes[end]
        # The kept tail must start at a user or assistant message: never split a call from its results.
        while end > start and views[end].role == "tool":
            end -= 1
        if end <= start or (end - start == 1 and _is_summary(views[start])):
            return start, start  # nothing, or only the previous summary: folding would gain nothing
        return start, end

    # -- folding ----------------------------------------------------------------------------------------
    def _prompt(self, folded: Sequence[Any]) -> list[tuple[str, str]]:
        return summary_prompt(folded, self.summary_tokens)

    def _extract(self, folded: Sequence[Any]) -> str:
        rendered = render_for_summary(folded)
        half = self.summary_tokens // 2
        head = self.counter.truncate(rendered, half)
        if len(head) == len(rendered):
            return rendered
        return head + "\n[…]\n" + tail_tokens(self.counter, rendered[len(head):], self.summary_tokens - half - 4)

    def _build(self, messages: Sequence[Any], span: tuple[int, int], summary_text: str | None, note: str | None,
               call: CallRecord | None, trigger: str, t0: float) -> FoldResult:
        start, end = span
        folded = list(messages[start:end])
        if summary_text is None or not summary_text.strip():
            summary_text = self._extract(folded)
            note = note or "extractive summary (no summarizer)"
        body = self.counter.truncate(summary_text.strip(), self.summary_tokens)
        summary_message = _summary_message(messages, body, end - start)
        new = list(messages[:start]) + [summary_message] + list(messages[end:])
        event = CleanEvent(trigger=trigger, cleaner="summarize", tokens_before=self.count(messages),
                           tokens_after=self.count(new), applied=len(folded),
                           note=note or f"folded {len(folded)} messages into one summary",
                           latency_s=time.perf_counter() - t0,
                           cleaner_latency_s=call.latency_s if call else 0.0,
                           usage=dict(call.usage) if call else {})
        return FoldResult(messages=new, folded=folded, summary=body, event=event, call=call, start=start)

    def _trigger(self, messages: Sequence[Any], force: bool) -> str | None:
        tokens = self.count(messages)
        if tokens > self.budget:
            return f"{tokens} tokens > budget {self.budget}"
        return "manual" if force else None

    def _fold_steps(self, messages: Sequence[Any], force: bool) -> Generator[Any, Any, FoldResult]:
        """The fold, written once: yields the summarizer prompt, receives its response (or the exception it
        raised: the fold then falls back to an extractive summary); returns the result."""
        t0 = time.perf_counter()
        trigger = self._trigger(messages, force)
        span = self.plan(messages) if trigger else (0, 0)
        if span[0] == span[1]:
            return FoldResult(list(messages), [], "", CleanEvent(trigger=trigger or "none", cleaner="summarize",
                                                                  note="nothing to fold"))
        text, note, call = None, None, None
        if self.summarizer is not None:
            prompt = self._prompt(messages[span[0]:span[1]])
            c0 = time.perf_counter()
            response = yield prompt
            try:
                if isinstance(response, Exception):
                    raise response
                text = answer_text(response)
                call = CallRecord("fold", 0, prompt_tokens(self.counter, prompt), self.counter.count(text),
                                  time.perf_counter() - c0, model_usage(response))
            except Exception as exc:  # noqa: BLE001 - fail open: extractive summary instead
                note = f"summarizer failed ({type(exc).__name__}: {exc}); extractive summary"
        return self._build(messages, span, text, note, call, trigger or "manual", t0)

    def _summarizer(self) -> Any:
        return bind_max_tokens(self.summarizer, self.max_tokens_param, self.summary_tokens)

    def fold(self, messages: Sequence[Any], *, force: bool = False, thread_id: str | None = None) -> FoldResult:
        """Fold when over budget (or always with ``force``); an unchanged result otherwise."""
        result = drive(self._fold_steps(messages, force), lambda prompt: self._summarizer().invoke(prompt),
                       fail_open=True)
        if not result.changed:
            return result
        return self._unarchived(messages, result, persist_event(self.archive, thread_id, archive_record(result)))

    async def afold(self, messages: Sequence[Any], *, force: bool = False,
                    thread_id: str | None = None) -> FoldResult:
        """Async twin of :meth:`fold`."""
        result = await adrive(self._fold_steps(messages, force), lambda prompt: self._summarizer().ainvoke(prompt),
                              fail_open=True)
        if not result.changed:
            return result
        failure = await apersist_event(self.archive, thread_id, archive_record(result))
        return self._unarchived(messages, result, failure)

    @staticmethod
    def _unarchived(messages: Sequence[Any], result: FoldResult, failure: ArchiveFailure | None) -> FoldResult:
        """``result``, or -- when the archive could not take the folded originals -- no fold at all (fail
        closed: they would be stored nowhere), its event saying why."""
        if failure is None:
            return result
        event = result.event
        event.error = failure.message
        event.tokens_after = event.tokens_before
        event.applied = 0
        return FoldResult(list(messages), [], "", event, result.call)

    # -- the memory-policy protocol (count / check / clean / aclean): every LangGraph surface takes it ----------
    def check(self, tokens: int, tokens_at_last_clean: int = 0, newest_text: str = "", *,
              idle_s: float | None = None) -> str | None:
        """A reason to fold (over budget), or None; the policy protocol's trigger check (``idle_s`` is not
        used: this policy does not schedule by cache cost)."""
        if self._budget_off:
            return None
        del tokens_at_last_clean, newest_text, idle_s
        return f"{tokens} tokens > budget {self.budget}" if tokens > self.budget else None

    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
              idle_s: float | None = None) -> CleanResult:
        """Fold as the policy protocol asks: a :class:`~freemem.memory.CleanResult` whose event carries the
        fold (the folded messages whole), so a surface persists it and its archive restores it exactly."""
        del tokens, idle_s
        result = drive(self._fold_steps(messages, True), lambda prompt: self._summarizer().invoke(prompt),
                       fail_open=True)
        return self._as_clean_result(messages, result, trigger)

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None,
                     idle_s: float | None = None) -> CleanResult:
        """Async twin of :meth:`clean`."""
        del tokens, idle_s
        result = await adrive(self._fold_steps(messages, True),
                              lambda prompt: self._summarizer().ainvoke(prompt), fail_open=True)
        return self._as_clean_result(messages, result, trigger)

    def _as_clean_result(self, messages: Sequence[Any], result: FoldResult, trigger: str) -> CleanResult:
        event = result.event
        event.trigger = trigger
        if not result.changed:
            event.applied = 0
            return CleanResult(messages=list(messages), text=None, event=event)
        at = result.start
        (summary,) = message_views([result.messages[at]])
        folded = message_views(result.folded)
        event.applied = 0  # no spans: the fold is the edit
        event.folds.append(FoldRecord(
            handle=str(summary.fold), index=at, message_id=str(summary.id),
            messages=[plain_message(m) for m in result.folded], message_ids=[v.id for v in folded],
            tokens=self.count(result.folded), digest_tokens=self.counter.count(result.summary),
            merged=next((v.fold for v in folded if v.fold), None), digest=result.summary,
            positions=list(range(at, at + len(result.folded)))))
        return CleanResult(messages=result.messages, text=None, event=event)


def archive_record(result: FoldResult) -> dict[str, Any]:
    """The archive entry of a fold: the ledger event plus the folded originals as OpenAI-style dicts."""
    record = result.event.to_dict(spans=True)
    record["policy"] = "summarize"
    record["summary"] = result.summary
    record["folded"] = [json_message(m) for m in result.folded]
    return record




def _is_summary(view: Any) -> bool:
    return any(text.startswith("[freemem summary of ") for _n, text in view.fields[:1])


def _summary_message(messages: Sequence[Any], body: str, n: int) -> Any:
    """The summary as a user message, in the same form (dict or LangChain) as the transcript, marked as a fold
    message (:data:`freemem.core.views.FOLD_KEY`, id ``freemem-fold-<handle>``): protected from edits, merged by
    the next fold, and undone exactly from the archive (:func:`freemem.core.archive.restore_event`)."""
    content = SUMMARY_PREFIX.format(n=n) + body
    handle = new_handle()
    like = next((m for m in messages if not isinstance(m, dict) and getattr(m, "type", None) == "human"), None)
    if messages and not isinstance(messages[0], dict) and like is None:
        from langchain_core.messages import HumanMessage

        like = HumanMessage(content="")
    return fold_message(like, handle, content, n)
