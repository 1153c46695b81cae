"""The ``summarize`` policy for reasoning models (InftyThink): reason in segments, keep only a summary.

Each round the model reasons for at most ``segment_tokens`` tokens and ends with ``<summary>…</summary>``; the
next round sees only the question and that summary ("sawtooth" memory). What the InftyThink reference loop
gets wrong is handled here: a segment cut off by the token limit is never taken as a final answer (even when it
contains ``\\boxed{}``); a missing, unterminated, empty or oversized summary gets a bounded number of dedicated
"summarise this segment" calls, then a deterministic fallback (previous summary + the tail of the segment,
bounded); and a round cap ends with one "answer now" call. Every model call's context is at most question +
one summary + one segment (plus fixed instructions).

This module is the policy: parsing, prompts, bounds and the three steps (:class:`InftyThinkerSteps`), each
written once as a generator yielding :class:`~freemem.policies.calls.ModelCall` requests. The LangGraph graph
that runs them with a checkpointer is :class:`freemem.langgraph.inftythink.InftyThinker`. No LangGraph here.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from freemem.core.errors import ConfigError
from freemem.core.ledger import CleanEvent
from freemem.core.views import MESSAGE_OVERHEAD_TOKENS
from freemem.messages import answer_text, hit_length_limit, model_usage
from freemem.policies.calls import (
    CallMetrics,
    CallRecord,
    ModelCall,
    model_handlers,
    prompt_tokens,
    tail_tokens,
)
from freemem.tokens import TokenCounter, cached_counter

__all__ = [
    "CONCLUDE_SYSTEM",
    "SEGMENT_SYSTEM",
    "SUMMARY_SYSTEM",
    "InftyThinkerSteps",
    "Segment",
    "ThinkResult",
    "ThinkState",
    "extract_answer",
    "fallback_summary",
    "parse_segment",
]

# ------------------------------------------------------------------------------------------- parsing

_SUMMARY_BLOCK = re.compile(r"<summary>(.*?)</summary>", re.S | re.I)
_SUMMARY_OPEN = re.compile(r"<summary>", re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_FINAL_LINE = re.compile(r"\bfinal answer(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*(.+?)\s*$", re.I | re.M)
_THINK = re.compile(r"</?think>", re.I)


def _boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unterminated: not an answer


def extract_answer(text: str) -> str | None:
    """A final answer stated in ``text``: ``<answer>…</answer>``, a ``Final answer:`` line, or the last
    ``\\boxed{…}``; None when there is none."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged and tagged[-1].strip():
        return tagged[-1].strip()
    lines = _FINAL_LINE.findall(text)
    if lines and lines[-1].strip():
        line = lines[-1].strip().rstrip("*").strip()
        return _boxed(line) or line  # "Final answer: \\boxed{16}" -> "16"
    return _boxed(text)


@dataclass(frozen=True)
class Segment:
    """One round's output, parsed.

    ``answer`` is set only for a segment that is complete (not cut off) and states a final answer outside its
    summary. ``summary`` is the content of the last complete ``<summary>`` block; ``problem`` says why it is
    unusable when it is None (or why a complete-looking segment is still not an answer).
    """

    text: str
    truncated: bool
    answer: str | None
    summary: str | None
    problem: str | None

    @property
    def needs_summary(self) -> bool:
        """The round produced neither a final answer nor a usable summary."""
        return self.answer is None and self.summary is None


def parse_segment(text: str, *, truncated: bool = False) -> Segment:
    """Parse a round's output (see :class:`Segment`). Never raises.

    Rules: a truncated segment is never an answer; a summary must be a closed, non-empty ``<summary>`` block
    (the last one wins); an answer is looked for outside summary blocks, so a summary that *mentions* a
    candidate ``\\boxed{}`` does not end the reasoning.
    """
    cleaned = _THINK.sub("", text)
    blocks = [b.strip() for b in _SUMMARY_BLOCK.findall(cleaned)]
    outside = _SUMMARY_BLOCK.sub("", cleaned)
    summary = blocks[-1] if blocks and blocks[-1] else None
    problem: str | None = None
    if summary is None:
        if blocks:
            problem = "empty <summary> block"
        elif _SUMMARY_OPEN.search(cleaned):
            problem = "unterminated <summary> block"
        else:
            problem = "no <summary> block"
    answer = None if truncated else extract_answer(outside)
    if truncated and problem is not None:
        problem = f"segment cut off at the token limit ({problem})"
    return Segment(text=text, truncated=truncated, answer=answer, summary=summary, problem=problem)


def fallback_summary(counter: TokenCounter, previous: str, segment: str, max_tokens: int) -> str:
    """A deterministic summary when the model gives none: the previous summary (at most half the budget)
    and the tail of the segment (the rest), so the next round continues from the newest reasoning."""
    head = "Summary of earlier rounds:\n"
    tail_head = "\nLatest reasoning (verbatim tail, the model gave no summary):\n"
    budget = max(0, max_tokens - counter.count(head) - counter.count(tail_head))
    prev = counter.truncate(previous.strip(), budget // 2) if previous.strip() else ""
    rest = budget - counter.count(prev)
    body = tail_tokens(counter, _THINK.sub("", segment).strip(), rest)
    text = (head + prev if prev else "") + (tail_head.lstrip("\n") if not prev else tail_head) + body
    return counter.truncate(text, max_tokens)


# ------------------------------------------------------------------------------------------- prompts

SEGMENT_SYSTEM = (
    "You reason in rounds. In this round you may write at most {segment_tokens} tokens.\n"
    "- If you reach the final answer in this round, end with a line 'Final answer: <answer>' "
    "(for math, put it in \\boxed{{}}).\n"
    "- Otherwise, before the limit, stop and write a summary of ALL progress so far (facts established, "
    "intermediate results, what to try next) inside <summary>...</summary>, at most {summary_tokens} tokens. "
    "The next round sees only the question and that summary, nothing else."
)
#: Tokens a dedicated summary call may write beyond ``summary_tokens``: the ``<summary>`` tags.
SUMMARY_TAG_TOKENS = 16

SUMMARY_SYSTEM = (
    "Summarise the reasoning below for the next round, which will see only the question and your summary. "
    "Keep every established fact, intermediate result and the plan. Write only the summary, inside "
    "<summary>...</summary>, at most {summary_tokens} tokens."
)
CONCLUDE_SYSTEM = (
    "You have no reasoning rounds left. From the question and the summary of your reasoning, give your best "
    "final answer now, on a line 'Final answer: <answer>' (for math, in \\boxed{{}})."
)


def _question_block(question: str, summary: str) -> str:
    if not summary:
        return f"Question:\n{question}"
    return (f"Question:\n{question}\n\nSummary of your reasoning so far:\n<summary>\n{summary}\n</summary>\n\n"
            "Continue from this summary.")


# --------------------------------------------------------------------------------------------- state


class ThinkState(TypedDict, total=False):
    """Graph state of :class:`InftyThinker` (JSON-plain, so any checkpointer can persist it)."""

    question: str
    summary: str
    round: int  # rounds started so far
    pending: str  # the last segment's text while it still needs a summary
    retries: int  # summary calls spent on the pending segment
    answer: str | None
    status: str  # "running", "answered", "round_cap"
    summaries: Annotated[list[str], operator.add]
    calls: Annotated[list[dict[str, Any]], operator.add]
    ledger: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class ThinkResult(CallMetrics):
    """What an :class:`InftyThinker` run produced, with the metrics the ``free`` policy also records."""

    answer: str | None
    status: Literal["answered", "round_cap", "running"]
    rounds: int
    summary: str
    summaries: list[str]
    calls: list[CallRecord]
    events: list[CleanEvent]

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ThinkResult:
        calls = [CallRecord(**{k: v for k, v in c.items() if k != "context_tokens"}) for c in state.get("calls", [])]
        return cls(answer=state.get("answer"), status=state.get("status", "running"), rounds=state.get("round", 0),
                   summary=state.get("summary", ""), summaries=list(state.get("summaries", [])), calls=calls,
                   events=[CleanEvent.from_dict(e) for e in state.get("ledger", [])])


class InftyThinkerSteps:
    """InftyThink's sawtooth reasoning loop, its steps without a graph (the graph:
    :class:`freemem.langgraph.inftythink.InftyThinker`), for any LangChain chat model.

    Graph: ``segment`` (one round of at most ``segment_tokens``) → ``summarize`` (only when the round ended
    without a usable summary; bounded retries, then :func:`fallback_summary`) → ``segment`` … until a final
    answer, or ``conclude`` (one "answer now" call) at the round cap. Each node's state is persisted by the
    checkpointer, so a crashed run resumes with ``invoke(None, config)`` from the last finished step.

    Args:
        model: a LangChain chat model (anything with ``invoke``/``ainvoke`` on a list of messages).
        segment_tokens: the most tokens one round may write (default 4,096). Bound on the model call as
            ``max_tokens_param`` and enforced again by counting (a longer output is cut and treated as cut off).
        summary_tokens: the most tokens a summary may keep (longer ones are truncated). Default 1,024.
        max_rounds: the round cap; the run then ends with one ``conclude`` call.
        summary_retries: dedicated summary calls for a round that gave none, before the fallback.
        counter: token counter (object or name) for every bound and metric.
        max_tokens_param: the keyword that caps generation (``"max_tokens"`` for OpenAI-compatible models;
            None to bind nothing).

    Raises:
        ConfigError: a non-positive size or a negative retry count.
    """

    def __init__(
        self,
        model: Any,
        *,
        segment_tokens: int = 4096,
        summary_tokens: int = 1024,
        max_rounds: int = 16,
        summary_retries: int = 2,
        counter: TokenCounter | str = "auto",
        max_tokens_param: str | None = "max_tokens",
    ) -> None:
        for name, value in (("segment_tokens", segment_tokens), ("summary_tokens", summary_tokens),
                            ("max_rounds", max_rounds)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if summary_retries < 0:
            raise ConfigError("summary_retries must be >= 0")
        self.model = model
        self.segment_tokens = segment_tokens
        self.summary_tokens = summary_tokens
        self.max_rounds = max_rounds
        self.summary_retries = summary_retries
        self.counter = cached_counter(counter)
        self.max_tokens_param = max_tokens_param

    # -- bounds -----------------------------------------------------------------------------------------
    def context_bound(self, question: str) -> int:
        """The most tokens any call may hold: instructions + question + one summary + one segment."""
        instructions = max(self.counter.count(s.format(segment_tokens=self.segment_tokens,
                                                       summary_tokens=self.summary_tokens))
                           for s in (SEGMENT_SYSTEM, SUMMARY_SYSTEM, CONCLUDE_SYSTEM))
        framing = self.counter.count(_question_block("x", "x")) + self.counter.count(
            "\n\nReasoning of this round:\n\n\nWrite the summary now.") + 2 * MESSAGE_OVERHEAD_TOKENS
        return instructions + framing + self.counter.count(question) + self.summary_tokens + self.segment_tokens

    # -- prompts ----------------------------------------------------------------------------------------
    def _segment_prompt(self, state: ThinkState) -> list[tuple[str, str]]:
        system = SEGMENT_SYSTEM.format(segment_tokens=self.segment_tokens, summary_tokens=self.summary_tokens)
        return [("system", system), ("human", _question_block(state["question"], state.get("summary", "")))]

    @property
    def _summary_output_tokens(self) -> int:
        """What a dedicated summary call may write: the summary and its tags."""
        return self.summary_tokens + SUMMARY_TAG_TOKENS

    def _summary_prompt(self, state: ThinkState) -> list[tuple[str, str]]:
        # The pending segment plus the summary written for it must fit in one segment, so the context of this
        # call stays within question + one summary + one segment: the segment's oldest part gives way.
        room = max(0, self.segment_tokens - self._summary_output_tokens)
        pending = state.get("pending", "")
        kept = tail_tokens(self.counter, pending, room)
        if len(kept) < len(pending):
            kept = "[…] " + tail_tokens(self.counter, kept, max(0, room - 2))
        system = SUMMARY_SYSTEM.format(summary_tokens=self.summary_tokens)
        body = (_question_block(state["question"], state.get("summary", ""))
                + f"\n\nReasoning of this round:\n{kept}\n\nWrite the summary now.")
        return [("system", system), ("human", body)]

    def _conclude_prompt(self, state: ThinkState) -> list[tuple[str, str]]:
        return [("system", CONCLUDE_SYSTEM), ("human", _question_block(state["question"], state.get("summary", "")))]

    # -- node logic (shared by the sync and async twins) -------------------------------------------------
    def _measure(self, kind: str, step: int, prompt: list[tuple[str, str]], response: Any, text: str,
                 latency: float) -> dict[str, Any]:
        return CallRecord(kind=kind, step=step, prompt_tokens=prompt_tokens(self.counter, prompt),
                          output_tokens=self.counter.count(text), latency_s=latency,
                          usage=model_usage(response)).to_dict()

    def _bounded_output(self, response: Any, limit: int) -> tuple[str, bool]:
        """The output text, cut to ``limit`` tokens; and whether it was cut off (by the server or by us)."""
        text = answer_text(response)
        truncated = hit_length_limit(response)
        if self.counter.count(text) > limit:
            text, truncated = self.counter.truncate(text, limit), True
        return text, truncated

    def _bounded_summary(self, summary: str) -> str:
        return self.counter.truncate(summary, self.summary_tokens)

    def _reset_event(self, state: ThinkState, round_: int, segment: str, summary: str, trigger: str,
                     note: str | None, t0: float) -> dict[str, Any]:
        """The ledger event of one context reset: question + summary + segment → question + new summary."""
        before = (self.counter.count(state["question"]) + self.counter.count(state.get("summary", ""))
                  + self.counter.count(segment))
        after = self.counter.count(state["question"]) + self.counter.count(summary)
        event = CleanEvent(trigger=trigger, cleaner="summarize", tokens_before=before, tokens_after=after,
                           applied=1, note=note, latency_s=time.perf_counter() - t0)
        return event.to_dict()

    def _after_segment(self, state: ThinkState, prompt: list[tuple[str, str]], response: Any,
                       latency: float, t0: float) -> dict[str, Any]:
        round_ = state.get("round", 0) + 1
        text, truncated = self._bounded_output(response, self.segment_tokens)
        update: dict[str, Any] = {"round": round_, "calls": [self._measure("segment", round_, prompt, response,
                                                                          text, latency)]}
        seg = parse_segment(text, truncated=truncated)
        if seg.answer is not None:
            update.update(answer=seg.answer, status="answered", pending="", retries=0)
        elif seg.summary is not None:
            summary = self._bounded_summary(seg.summary)
            note = None if summary == seg.summary else "summary truncated to the summary bound"
            update.update(summary=summary, summaries=[summary], pending="", retries=0,
                          ledger=[self._reset_event(state, round_, text, summary,
                                                    f"round {round_} ended", note, t0)])
            if round_ >= self.max_rounds:
                update["status"] = "round_cap"
        else:
            update.update(pending=text, retries=0)
        return update

    def _after_summary(self, state: ThinkState, prompt: list[tuple[str, str]], response: Any | BaseException,
                       latency: float, t0: float) -> dict[str, Any]:
        round_ = state.get("round", 0)
        retries = state.get("retries", 0) + 1
        update: dict[str, Any] = {"retries": retries}
        problem: str
        if isinstance(response, BaseException):
            problem = f"summary call failed: {type(response).__name__}: {response}"
            update["calls"] = [CallRecord("summary", round_, prompt_tokens(self.counter, prompt), 0,
                                          latency).to_dict()]
            summary = None
        else:
            text, cut = self._bounded_output(response, self._summary_output_tokens)
            update["calls"] = [self._measure("summary", round_, prompt, response, text, latency)]
            seg = parse_segment(text)
            summary = seg.summary
            opened = _SUMMARY_OPEN.search(text)
            if summary is None and opened and cut:
                # Too long rather than malformed: keep its start (it is truncated to the bound below).
                summary = text[opened.end():].strip() or None
            elif summary is None and not opened and text.strip():
                summary = text.strip()  # a bare summary without tags is still a summary
            problem = seg.problem or "empty summary"
        if summary is not None:
            summary = self._bounded_summary(summary)
            note = f"summary written by a dedicated call (attempt {retries})"
        elif retries >= self.summary_retries:
            summary = fallback_summary(self.counter, state.get("summary", ""), state.get("pending", ""),
                                       self.summary_tokens)
            note = f"fallback summary after {retries} failed attempt(s): {problem}"
        else:
            return update
        update.update(summary=summary, summaries=[summary], pending="", retries=0,
                      ledger=[self._reset_event(state, round_, state.get("pending", ""), summary,
                                                f"round {round_} ended without a summary", note, t0)])
        if round_ >= self.max_rounds:
            update["status"] = "round_cap"
        return update

    def _after_conclude(self, state: ThinkState, prompt: list[tuple[str, str]], response: Any,
                        latency: float) -> dict[str, Any]:
        text, truncated = self._bounded_output(response, self.segment_tokens)
        seg = parse_segment(text, truncated=truncated)
        return {"answer": seg.answer, "status": "round_cap",
                "calls": [self._measure("conclude", state.get("round", 0), prompt, response, text, latency)]}

    def route(self, state: ThinkState) -> str:
        """The next node: ``segment``, ``summarize``, ``conclude`` or ``__end__``."""
        if state.get("status") == "answered":
            return "__end__"
        if state.get("pending"):
            return "summarize"
        if state.get("status") == "round_cap" or state.get("round", 0) >= self.max_rounds:
            return "conclude"
        return "segment"

    # -- the steps: each written once, yielding ModelCall requests; a graph node drives each ---------------
    def segment_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        """One round of at most ``segment_tokens``; the state update."""
        t0 = time.perf_counter()
        prompt = self._segment_prompt(state)
        response = yield ModelCall(prompt, self.segment_tokens)
        return self._after_segment(state, prompt, response, time.perf_counter() - t0, t0)

    def summarize_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        """A dedicated summary call for a round that gave none. Drive it fail-open: a failed summary call is
        one failed attempt (its exception is the response)."""
        t0 = time.perf_counter()
        prompt = self._summary_prompt(state)
        response = yield ModelCall(prompt, self._summary_output_tokens)
        return self._after_summary(state, prompt, response, time.perf_counter() - t0, t0)

    def conclude_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        """The "answer now" call at the round cap."""
        t0 = time.perf_counter()
        prompt = self._conclude_prompt(state)
        response = yield ModelCall(prompt, self.segment_tokens)
        return self._after_conclude(state, prompt, response, time.perf_counter() - t0)

    @property
    def handlers(self) -> dict[str, Callable[[ModelCall], Any]]:
        """What answers the steps' :class:`~freemem.policies.calls.ModelCall` requests, by mode."""
        return model_handlers(self.model, self.max_tokens_param)

    def recursion_limit(self) -> int:
        """Graph steps a run may take: segment + summary attempts per round, the conclude call, and slack."""
        return self.max_rounds * (self.summary_retries + 1) + 10

    @staticmethod
    def initial_state(question: str | None) -> dict[str, Any] | None:
        """The state a run starts from; None for ``question=None`` (resume from a checkpoint)."""
        if question is None:
            return None  # resume from the checkpoint
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("question must be a non-empty string")
        return {"question": question, "summary": "", "round": 0, "pending": "", "retries": 0, "answer": None,
                "status": "running"}
