"""The ``summarize`` policy (InftyThink): keep a summary, drop what it summarises.

Two surfaces share the idea — context is reset to *question + latest summary* ("sawtooth" memory):

* :class:`InftyThinker` — a LangGraph loop for reasoning models. Each round the model reasons for at most
  ``segment_tokens`` tokens and ends with ``<summary>…</summary>``; the next round sees only the question and
  that summary. What the InftyThink reference loop gets wrong is handled here: a segment cut off by the token
  limit is never taken as a final answer (even when it contains ``\\boxed{}``); a missing, unterminated, empty
  or oversized summary gets a bounded number of dedicated "summarise this segment" calls, then a deterministic
  fallback (previous summary + the tail of the segment, bounded); and a round cap ends with one "answer now"
  call. Every model call's context is at most question + one summary + one segment (plus fixed instructions).
* :class:`SummarizeMemory` — a memory policy for chat/tool transcripts: older turns are folded into one
  summary message, the cut never separates a tool call from its result (zero pairing violations), and the
  folded originals are returned and handed to the archive.

Both record :class:`~freemem.ledger.CleanEvent` objects like the ``free`` policy, plus per-call metrics
(:class:`CallRecord`: prompt/output tokens, context per call), from which calls and peak context follow.

The core of this module (parsing, prompts, bounds) imports no LangGraph; the graph is built lazily by
:attr:`InftyThinker.graph`, and chat models are duck-typed (``invoke``/``ainvoke`` returning a message).
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from freemem.archives import ArchiveFailure, apersist_event, persist_event
from freemem.context import message_views
from freemem.digest import FOLD_SUMMARY_SYSTEM, render_for_summary, summary_prompt
from freemem.driving import adrive, drive
from freemem.errors import ConfigError
from freemem.folding import FoldRecord, fold_message, new_handle, plain_message
from freemem.ledger import CleanEvent
from freemem.memory import MESSAGE_OVERHEAD_TOKENS, CleanResult
from freemem.messages import answer_text, hit_length_limit, json_message, model_usage
from freemem.tokens import TokenCounter, cached_counter

__all__ = [
    "CallMetrics",
    "CallRecord",
    "FoldResult",
    "InftyThinker",
    "ModelCall",
    "Segment",
    "SummarizeMemory",
    "ThinkResult",
    "fallback_summary",
    "parse_segment",
]

# ----------------------------------------------------------------------------------------- model calls


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


@dataclass(frozen=True)
class ModelCall:
    """A request for one chat-model call (driven by :func:`freemem.driving.drive`): ``prompt`` as
    ``(role, text)`` pairs, the answer bounded to ``max_tokens``."""

    prompt: list[tuple[str, str]]
    max_tokens: int










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


def bind_max_tokens(model: Any, param: str | None, limit: int) -> Any:
    """``model.bind(**{param: limit})`` when the model supports binding and a parameter name is given."""
    if param and hasattr(model, "bind"):
        return model.bind(**{param: limit})
    return model


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


# --------------------------------------------------------------------------------------------- thinker


class InftyThinker:
    """InftyThink's sawtooth reasoning loop as a LangGraph graph, for any LangChain chat model.

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
        checkpointer: a LangGraph checkpointer; then pass ``{"configurable": {"thread_id": ...}}``.

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
        checkpointer: Any = None,
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
        self.checkpointer = checkpointer
        self._graph: Any = None

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

    def _route(self, state: ThinkState) -> str:
        if state.get("status") == "answered":
            return "__end__"
        if state.get("pending"):
            return "summarize"
        if state.get("status") == "round_cap" or state.get("round", 0) >= self.max_rounds:
            return "conclude"
        return "segment"

    # -- nodes: each written once as steps that yield a ModelCall; the sync and async twins drive them ---
    def _segment_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        t0 = time.perf_counter()
        prompt = self._segment_prompt(state)
        response = yield ModelCall(prompt, self.segment_tokens)
        return self._after_segment(state, prompt, response, time.perf_counter() - t0, t0)

    def _summarize_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        # Driven fail-open: a failed summary call is one failed attempt (its exception is the response).
        t0 = time.perf_counter()
        prompt = self._summary_prompt(state)
        response = yield ModelCall(prompt, self._summary_output_tokens)
        return self._after_summary(state, prompt, response, time.perf_counter() - t0, t0)

    def _conclude_steps(self, state: ThinkState) -> Generator[ModelCall, Any, dict[str, Any]]:
        t0 = time.perf_counter()
        prompt = self._conclude_prompt(state)
        response = yield ModelCall(prompt, self.segment_tokens)
        return self._after_conclude(state, prompt, response, time.perf_counter() - t0)

    def _invoke(self, call: ModelCall) -> Any:
        return bind_max_tokens(self.model, self.max_tokens_param, call.max_tokens).invoke(call.prompt)

    def _ainvoke(self, call: ModelCall) -> Awaitable[Any]:
        return bind_max_tokens(self.model, self.max_tokens_param, call.max_tokens).ainvoke(call.prompt)

    def _node(self, steps: Callable[[ThinkState], Generator[ModelCall, Any, dict[str, Any]]], name: str, *,
              fail_open: bool = False) -> Any:
        """A graph node (sync and async twins) that drives ``steps``."""
        from langchain_core.runnables import RunnableLambda

        def node(state: ThinkState) -> dict[str, Any]:
            return drive(steps(state), self._invoke, fail_open=fail_open)

        async def anode(state: ThinkState) -> dict[str, Any]:
            return await adrive(steps(state), self._ainvoke, fail_open=fail_open)

        return RunnableLambda(node, afunc=anode, name=name)

    # -- graph ------------------------------------------------------------------------------------------
    @property
    def graph(self) -> Any:
        """The compiled LangGraph graph (built on first use)."""
        if self._graph is None:
            from langgraph.graph import END, START, StateGraph

            builder = StateGraph(ThinkState)
            builder.add_node("segment", self._node(self._segment_steps, "segment"))
            builder.add_node("summarize", self._node(self._summarize_steps, "summarize", fail_open=True))
            builder.add_node("conclude", self._node(self._conclude_steps, "conclude"))
            builder.add_edge(START, "segment")
            targets = {"segment": "segment", "summarize": "summarize", "conclude": "conclude", "__end__": END}
            builder.add_conditional_edges("segment", self._route, targets)
            builder.add_conditional_edges("summarize", self._route, targets)
            builder.add_edge("conclude", END)
            self._graph = builder.compile(checkpointer=self.checkpointer, name="InftyThinker")
        return self._graph

    def _config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        cfg = dict(config or {})
        # segment + summary attempts per round, the conclude call, and slack.
        cfg.setdefault("recursion_limit", self.max_rounds * (self.summary_retries + 1) + 10)
        return cfg

    @staticmethod
    def _input(question: str | None) -> dict[str, Any] | None:
        if question is None:
            return None  # resume from the checkpoint
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("question must be a non-empty string")
        return {"question": question, "summary": "", "round": 0, "pending": "", "retries": 0, "answer": None,
                "status": "running"}

    def invoke(self, question: str | None, config: Mapping[str, Any] | None = None) -> ThinkResult:
        """Reason about ``question`` until an answer or the round cap. ``None`` resumes the thread named in
        ``config`` from its last checkpoint (needs a checkpointer)."""
        state = self.graph.invoke(self._input(question), self._config(config))
        return ThinkResult.from_state(state)

    async def ainvoke(self, question: str | None, config: Mapping[str, Any] | None = None) -> ThinkResult:
        """Async twin of :meth:`invoke`."""
        state = await self.graph.ainvoke(self._input(question), self._config(config))
        return ThinkResult.from_state(state)


# ---------------------------------------------------------------------------------- transcript memory

#: The fold instruction, kept under its old name (it lives in :mod:`freemem.digest`; this module's
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
        self.keep_tokens = budget // 4 if keep_tokens is None else keep_tokens
        self.summary_tokens = summary_tokens
        self.counter = cached_counter(counter)
        self.archive = archive
        self.max_tokens_param = max_tokens_param

    # -- planning ---------------------------------------------------------------------------------------
    def count(self, messages: Sequence[Any]) -> int:
        """Tokens of a message list (text fields, tool-call names and arguments, per-message overhead)."""
        total = 0
        for view in message_views(messages):
            total += sum(self.counter.count(t) for _n, t in view.fields) + MESSAGE_OVERHEAD_TOKENS
            total += sum(self.counter.count(a) + self.counter.count(n) for _i, n, a in view.tool_calls)
        return total

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
    def check(self, tokens: int, tokens_at_last_clean: int = 0, newest_text: str = "") -> str | None:
        """A reason to fold (over budget), or None; the policy protocol's trigger check."""
        del tokens_at_last_clean, newest_text
        return f"{tokens} tokens > budget {self.budget}" if tokens > self.budget else None

    def clean(self, messages: Sequence[Any], *, trigger: str = "manual", tokens: int | None = None) -> CleanResult:
        """Fold as the policy protocol asks: a :class:`~freemem.memory.CleanResult` whose event carries the
        fold (the folded messages whole), so a surface persists it and its archive restores it exactly."""
        del tokens
        result = drive(self._fold_steps(messages, True), lambda prompt: self._summarizer().invoke(prompt),
                       fail_open=True)
        return self._as_clean_result(messages, result, trigger)

    async def aclean(self, messages: Sequence[Any], *, trigger: str = "manual",
                     tokens: int | None = None) -> CleanResult:
        """Async twin of :meth:`clean`."""
        del tokens
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
    message (:data:`freemem.context.FOLD_KEY`, id ``freemem-fold-<handle>``): protected from edits, merged by
    the next fold, and undone exactly from the archive (:func:`freemem.archive.restore_event`)."""
    content = SUMMARY_PREFIX.format(n=n) + body
    handle = new_handle()
    like = next((m for m in messages if not isinstance(m, dict) and getattr(m, "type", None) == "human"), None)
    if messages and not isinstance(messages[0], dict) and like is None:
        from langchain_core.messages import HumanMessage

        like = HumanMessage(content="")
    return fold_message(like, handle, content, n)
