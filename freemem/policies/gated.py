"""The ``gated`` policy (GRU-Mem, extending MemAgent): read a long input chunk by chunk into a bounded memory.

Each step the memory agent sees the question, the current memory and one chunk (default 5,000 tokens), and
answers in a fixed format::

    <think>…</think>                (optional)
    <update>yes|no</update>         update gate: take the candidate memory, or keep the old one
    <memory>…</memory>              candidate memory
    <exit>continue|end</exit>       exit gate: read on, or stop — the evidence is complete

The memory is bounded (default 1,024 tokens): a candidate is re-counted and truncated to the bound, so the
memory never exceeds it whatever the model writes. After the last step one *answer* call sees only the
question and the memory.

Inference modes (:class:`GatedReaderSteps` arguments): ``use_exit_gate=True`` stops at the step whose exit gate
says ``end``; ``use_exit_gate=False`` reads everything (the gate is still parsed and recorded).
``use_update_gate=False`` is MemAgent: the memory is overwritten with the candidate every step.

Parsing is strict — each tag exactly once, the gate values exactly ``yes``/``no`` and ``continue``/``end`` —
and a malformed step is asked again (``step_retries`` times), then falls back: update gate unreadable or no
candidate → keep the old memory; exit gate unreadable → continue (never stop on a malformed step).

This module is the policy: chunking, parsing, prompts, the gates and the two steps (:class:`GatedReaderSteps`:
``read`` and ``answer``, each written once as a generator yielding :class:`~freemem.policies.calls.ModelCall`
requests). The LangGraph graph (``read`` once per chunk, then ``answer``, each step persisted by the
checkpointer) and the LangChain tool are :class:`freemem.langgraph.gated.GatedReader`. No LangGraph here.
Every step writes a :class:`~freemem.core.ledger.CleanEvent` and a :class:`~freemem.policies.calls.CallRecord`
(tokens per call), the step record keeps the memory size, and the result says where the exit happened.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypedDict

from freemem.core.errors import ConfigError
from freemem.core.ledger import CleanEvent
from freemem.messages import answer_text, model_usage
from freemem.policies.calls import CallMetrics, CallRecord, ModelCall, model_handlers, prompt_tokens
from freemem.tokens import TokenCounter, cached_counter

__all__ = [
    "GateDecision",
    "GatedReaderSteps",
    "ReadResult",
    "StepRecord",
    "parse_gated_step",
    "split_chunks",
]

# ------------------------------------------------------------------------------------------- chunking


def split_chunks(text: str, chunk_tokens: int, counter: TokenCounter) -> list[str]:
    """Cut ``text`` into consecutive chunks of at most ``chunk_tokens`` tokens that join back to ``text``.

    A cut prefers a paragraph break, then a line break, then a sentence end, then a space, in the last
    quarter of the chunk, so passages are split as rarely as possible.

    Raises:
        ConfigError: ``chunk_tokens`` is not positive.
    """
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens <= 0:
        raise ConfigError(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
    chunks: list[str] = []
    rest = text
    while rest:
        piece = counter.truncate(rest, chunk_tokens)
        if len(piece) == len(rest):
            chunks.append(rest)
            break
        if not piece:  # one character over the budget on its own: take it anyway, to make progress
            piece = rest[:1]
        else:
            floor = len(piece) * 3 // 4
            for sep in ("\n\n", "\n", ". ", " "):
                at = piece.rfind(sep, floor)
                if at > 0:
                    piece = piece[: at + len(sep)]
                    break
        chunks.append(piece)
        rest = rest[len(piece):]
    return chunks


# ------------------------------------------------------------------------------------------- parsing

_TAG = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.S | re.I) for name in ("update", "memory", "exit")}
_OPEN = {name: re.compile(rf"<{name}>", re.I) for name in ("update", "memory", "exit")}
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)


@dataclass(frozen=True)
class GateDecision:
    """A parsed memory-agent step. ``update``/``exit`` are None when unreadable; ``problems`` says why."""

    update: bool | None
    memory: str | None
    exit: bool | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _one(text: str, name: str, problems: list[str]) -> str | None:
    found = _TAG[name].findall(text)
    if len(found) == 1:
        return found[0]
    if not found:
        problems.append(f"<{name}> unterminated" if _OPEN[name].search(text) else f"no <{name}> tag")
    else:
        problems.append(f"{len(found)} <{name}> tags, expected one")
    return None


def parse_gated_step(text: str, *, need_gates: bool = True) -> GateDecision:
    """Parse one memory-agent answer strictly (see the module docstring). Never raises.

    With ``need_gates=False`` (MemAgent mode) only ``<memory>`` is required; gates that are there are read.
    """
    body = _THINK_BLOCK.sub("", text)
    problems: list[str] = []
    gate_problems: list[str] = []
    raw_update = _one(body, "update", gate_problems)
    raw_exit = _one(body, "exit", gate_problems)
    memory = _one(body, "memory", problems)
    update: bool | None = None
    if raw_update is not None:
        value = raw_update.strip().lower()
        update = {"yes": True, "no": False}.get(value)
        if update is None:
            gate_problems.append(f"update gate {raw_update.strip()[:20]!r} is not yes/no")
    exit_: bool | None = None
    if raw_exit is not None:
        value = raw_exit.strip().lower()
        exit_ = {"end": True, "continue": False}.get(value)
        if exit_ is None:
            gate_problems.append(f"exit gate {raw_exit.strip()[:20]!r} is not continue/end")
    if need_gates:
        problems.extend(gate_problems)
        if update is True and memory is not None and not memory.strip():
            problems.append("update gate open but the candidate memory is empty")
    return GateDecision(update=update, memory=None if memory is None else memory.strip(), exit=exit_,
                        problems=tuple(problems))


# ------------------------------------------------------------------------------------------- prompts

MEMORY_SYSTEM = (
    "You read a long document one chunk at a time to answer a question, keeping notes in a memory of at most "
    "{memory_tokens} tokens. You see the question, your current memory and the next chunk.\n"
    "Answer exactly in this format:\n"
    "<think>your reasoning about the chunk</think>\n"
    "<update>yes or no</update>  (yes only if the chunk holds information relevant to the question)\n"
    "<memory>the complete new memory: the old memory plus what matters from this chunk</memory>\n"
    "<exit>continue or end</exit>  (end only when the memory holds all the evidence needed to answer)"
)
MEMAGENT_SYSTEM = (
    "You read a long document one chunk at a time to answer a question, keeping notes in a memory of at most "
    "{memory_tokens} tokens. You see the question, your current memory and the next chunk.\n"
    "Rewrite the memory: keep what matters for the question from the old memory and the chunk. Answer exactly "
    "in this format:\n<memory>the complete new memory</memory>"
)
ANSWER_SYSTEM = (
    "Answer the question from your memory of a long document. Be brief; write the answer inside "
    "<answer>...</answer>."
)
RETRY_NOTE = "\n\nYour previous answer could not be read ({problems}). Follow the format exactly."


def memory_prompt(question: str, memory: str, chunk: str, index: int, total: int) -> str:
    """The user message of one memory step (sections in tags, so a scripted agent can read them back)."""
    return (f"<question>\n{question}\n</question>\n\n<current_memory>\n{memory or 'No memory yet.'}\n"
            f"</current_memory>\n\n<chunk index=\"{index + 1}\" of=\"{total}\">\n{chunk}\n</chunk>")


def answer_prompt(question: str, memory: str) -> str:
    """The user message of the answer step."""
    return f"<question>\n{question}\n</question>\n\n<memory>\n{memory or 'No memory.'}\n</memory>"


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


def parse_answer(text: str) -> str:
    """The ``<answer>`` content, or the whole text (stripped, without ``<think>`` blocks) when untagged."""
    body = _THINK_BLOCK.sub("", text)
    found = _ANSWER.findall(body)
    return found[-1].strip() if found else body.strip()


# --------------------------------------------------------------------------------------------- state


@dataclass
class StepRecord:
    """One read step: the gates as decided and as applied, memory size, tokens, and parse problems."""

    index: int
    update: bool | None
    exit: bool | None
    updated: bool  # whether the memory was replaced
    memory_tokens: int
    memory_truncated: bool
    prompt_tokens: int
    output_tokens: int
    attempts: int
    problems: list[str] = field(default_factory=list)
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReaderState(TypedDict, total=False):
    """Graph state of :class:`GatedReader` (JSON-plain, persisted after every step)."""

    question: str
    chunks: list[str]
    position: int  # chunks read so far
    memory: str
    done: bool  # reading finished (all read, or the exit gate fired)
    exit_position: int | None  # index of the chunk whose step stopped the reading
    exit_signalled: int | None  # first chunk whose exit gate said "end" (also without the exit gate)
    answer: str | None
    steps: Annotated[list[dict[str, Any]], operator.add]
    calls: Annotated[list[dict[str, Any]], operator.add]
    ledger: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class ReadResult(CallMetrics):
    """What a :class:`GatedReader` run produced, with the same metrics as the other policies."""

    answer: str | None
    memory: str
    chunks_total: int
    chunks_read: int
    exit_position: int | None
    exit_signalled: int | None
    steps: list[StepRecord]
    calls: list[CallRecord]
    events: list[CleanEvent]

    @property
    def memory_sizes(self) -> list[int]:
        """Memory tokens after each step."""
        return [s.memory_tokens for s in self.steps]

    def metrics(self) -> dict[str, Any]:
        """The figures as a JSON-plain dict."""
        return {"calls": len(self.calls), "chunks_total": self.chunks_total, "chunks_read": self.chunks_read,
                "exit_position": self.exit_position, "exit_signalled": self.exit_signalled,
                "peak_context": self.peak_context, "total_tokens": self.total_tokens,
                "prompt_tokens": sum(c.prompt_tokens for c in self.calls),
                "output_tokens": sum(c.output_tokens for c in self.calls),
                "memory_sizes": self.memory_sizes, "updates": sum(s.updated for s in self.steps)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ReadResult:
        calls = [CallRecord(**{k: v for k, v in c.items() if k != "context_tokens"}) for c in state.get("calls", [])]
        return cls(answer=state.get("answer"), memory=state.get("memory", ""),
                   chunks_total=len(state.get("chunks", [])), chunks_read=state.get("position", 0),
                   exit_position=state.get("exit_position"), exit_signalled=state.get("exit_signalled"),
                   steps=[StepRecord(**s) for s in state.get("steps", [])], calls=calls,
                   events=[CleanEvent.from_dict(e) for e in state.get("ledger", [])])


# ---------------------------------------------------------------------------------------------- reader


class GatedReaderSteps:
    """GRU-Mem's gated memory reader, its steps without a graph (the graph and the tool:
    :class:`freemem.langgraph.gated.GatedReader`), for any LangChain chat model.

    Args:
        model: the memory agent (a LangChain chat model: ``invoke``/``ainvoke`` on a list of messages).
        answer_model: the model for the answer step (default: ``model``).
        chunk_tokens: tokens per chunk (default 5,000).
        memory_tokens: the memory bound (default 1,024), enforced by re-counting and truncating.
        use_exit_gate: stop at the step whose exit gate says ``end`` (True), or read everything (False).
        use_update_gate: honour the update gate (True), or always overwrite the memory (MemAgent, False).
        step_retries: how many times a malformed step is asked again before the fallback.
        counter: token counter, object or name.
        max_tokens_param: the keyword capping generation (``"max_tokens"``; None binds nothing). A memory step
            may write ``memory_tokens`` plus ``think_tokens`` for its reasoning and tags.
        think_tokens: generation allowance beyond the memory for ``<think>`` and the tags (default 1,024).

    Raises:
        ConfigError: non-positive sizes or negative retries.
    """

    def __init__(
        self,
        model: Any,
        *,
        answer_model: Any = None,
        chunk_tokens: int = 5000,
        memory_tokens: int = 1024,
        use_exit_gate: bool = True,
        use_update_gate: bool = True,
        step_retries: int = 1,
        counter: TokenCounter | str = "auto",
        max_tokens_param: str | None = "max_tokens",
        think_tokens: int = 1024,
    ) -> None:
        for name, value in (("chunk_tokens", chunk_tokens), ("memory_tokens", memory_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if step_retries < 0 or think_tokens < 0:
            raise ConfigError("step_retries and think_tokens must be >= 0")
        self.model = model
        self.answer_model = answer_model if answer_model is not None else model
        self.chunk_tokens = chunk_tokens
        self.memory_tokens = memory_tokens
        self.use_exit_gate = use_exit_gate
        self.use_update_gate = use_update_gate
        self.step_retries = step_retries
        self.counter = cached_counter(counter)
        self.max_tokens_param = max_tokens_param
        self.think_tokens = think_tokens

    @property
    def mode(self) -> str:
        """``"gated"``, ``"gated-no-exit"`` or ``"ungated"`` (MemAgent)."""
        if not self.use_update_gate:
            return "ungated"
        return "gated" if self.use_exit_gate else "gated-no-exit"

    def split(self, document: str) -> list[str]:
        """The document's chunks (see :func:`split_chunks`)."""
        return split_chunks(document, self.chunk_tokens, self.counter)

    # -- one step (shared by the sync and async twins) --------------------------------------------------
    def _system(self) -> str:
        template = MEMORY_SYSTEM if self.use_update_gate else MEMAGENT_SYSTEM
        return template.format(memory_tokens=self.memory_tokens)

    def _step_prompt(self, state: ReaderState, problems: Sequence[str]) -> list[tuple[str, str]]:
        i = state.get("position", 0)
        user = memory_prompt(state["question"], state.get("memory", ""), state["chunks"][i], i, len(state["chunks"]))
        if problems:
            user += RETRY_NOTE.format(problems="; ".join(problems))
        return [("system", self._system()), ("human", user)]

    def _decide(self, state: ReaderState, decision: GateDecision, attempts: int, prompt_toks: int,
                output_toks: int, t0: float) -> dict[str, Any]:
        """Apply the gates (with fallbacks) and build the state update of one step."""
        i = state.get("position", 0)
        old = state.get("memory", "")
        problems = list(decision.problems)
        fallback: str | None = None
        if self.use_update_gate:
            take = decision.update is True and bool(decision.memory)
            if decision.update is None:
                fallback = "update gate unreadable: memory kept"
            elif decision.update and not decision.memory:
                fallback = "no candidate memory: memory kept"
        else:
            take = decision.memory is not None
            if not take:
                fallback = "no candidate memory: memory kept"
        memory, truncated = old, False
        if take:
            candidate = decision.memory or ""
            memory = self.counter.truncate(candidate, self.memory_tokens)
            truncated = len(memory) < len(candidate)
        wants_exit = decision.exit is True
        if self.use_update_gate and decision.exit is None:
            fallback = (fallback + "; " if fallback else "") + "exit gate unreadable: continue"
        last = i + 1 >= len(state["chunks"])
        stop = last or (self.use_exit_gate and self.use_update_gate and wants_exit)
        mem_tokens = self.counter.count(memory)
        record = StepRecord(index=i, update=decision.update, exit=decision.exit, updated=take,
                            memory_tokens=mem_tokens, memory_truncated=truncated, prompt_tokens=prompt_toks,
                            output_tokens=output_toks, attempts=attempts, problems=problems, fallback=fallback)
        chunk_toks = self.counter.count(state["chunks"][i])
        event = CleanEvent(
            trigger=f"chunk {i + 1}/{len(state['chunks'])}", cleaner=self.mode,
            tokens_before=self.counter.count(old) + chunk_toks, tokens_after=mem_tokens, applied=int(take),
            note=(f"update={_gate(decision.update, 'yes', 'no')} exit={_gate(decision.exit, 'end', 'continue')}"
                  + (" memory truncated to the bound" if truncated else "")
                  + (f"; fallback: {fallback}" if fallback else "")),
            error="; ".join(problems) or None, latency_s=time.perf_counter() - t0)
        update: dict[str, Any] = {"memory": memory, "position": i + 1, "done": stop, "steps": [record.to_dict()],
                                  "ledger": [event.to_dict()]}
        if wants_exit and state.get("exit_signalled") is None:
            update["exit_signalled"] = i
        if stop:
            update["exit_position"] = i
        return update

    def read_steps(self, state: ReaderState) -> Generator[ModelCall, Any, dict[str, Any]]:
        """One reading step: yields each memory-agent call (a retry re-asks with the problems stated),
        receives the model's response; returns the state update."""
        t0 = time.perf_counter()
        calls: list[dict[str, Any]] = []
        problems: list[str] = []
        decision = GateDecision(None, None, None, ("not asked",))
        for attempt in range(1, self.step_retries + 2):  # noqa: B007 - the last attempt number is used after the loop
            prompt = self._step_prompt(state, problems)
            c0 = time.perf_counter()
            response = yield ModelCall(prompt, self.memory_tokens + self.think_tokens)
            decision, record = self._parse_call(state, prompt, response, c0)
            calls.append(record)
            if decision.ok:
                break
            problems = list(decision.problems)
        update = self._decide(state, decision, attempt, sum(c["prompt_tokens"] for c in calls),
                              sum(c["output_tokens"] for c in calls), t0)
        update["calls"] = calls
        return update

    def _parse_call(self, state: ReaderState, prompt: list[tuple[str, str]], response: Any,
                    c0: float) -> tuple[GateDecision, dict[str, Any]]:
        text = answer_text(response)
        record = CallRecord("memory", state.get("position", 0), prompt_tokens(self.counter, prompt),
                            self.counter.count(text), time.perf_counter() - c0, model_usage(response))
        return parse_gated_step(text, need_gates=self.use_update_gate), record.to_dict()

    def _answer_prompt(self, state: ReaderState) -> list[tuple[str, str]]:
        return [("system", ANSWER_SYSTEM), ("human", answer_prompt(state["question"], state.get("memory", "")))]

    def _after_answer(self, state: ReaderState, prompt: list[tuple[str, str]], response: Any,
                      c0: float) -> dict[str, Any]:
        text = answer_text(response)
        call = CallRecord("answer", state.get("position", 0), prompt_tokens(self.counter, prompt),
                          self.counter.count(text), time.perf_counter() - c0, model_usage(response))
        return {"answer": parse_answer(text), "calls": [call.to_dict()]}

    def answer_steps(self, state: ReaderState) -> Generator[ModelCall, Any, dict[str, Any]]:
        """The answer call: the question and the memory only, by ``answer_model``."""
        c0 = time.perf_counter()
        prompt = self._answer_prompt(state)
        response = yield ModelCall(prompt, None, model=self.answer_model)
        return self._after_answer(state, prompt, response, c0)

    @property
    def handlers(self) -> dict[str, Callable[[ModelCall], Any]]:
        """What answers the steps' :class:`~freemem.policies.calls.ModelCall` requests, by mode."""
        return model_handlers(self.model, self.max_tokens_param)

    @staticmethod
    def route(state: ReaderState) -> str:
        """The next node: ``read`` (another chunk) or ``answer``."""
        if state.get("done") or state.get("position", 0) >= len(state.get("chunks", [])):
            return "answer"
        return "read"

    def initial_state(self, question: str | None, document: str | None) -> dict[str, Any] | None:
        """The state a run starts from; None when both are None (resume from a checkpoint)."""
        if question is None and document is None:
            return None  # resume from the checkpoint
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("question must be a non-empty string")
        if not isinstance(document, str):
            raise ConfigError("document must be a string")
        chunks = self.split(document) or [""]
        return {"question": question, "chunks": chunks, "position": 0, "memory": "", "done": False,
                "exit_position": None, "exit_signalled": None, "answer": None}

    @staticmethod
    def recursion_limit(inputs: Mapping[str, Any] | None) -> int:
        """Graph steps a run of ``inputs`` may take: one per chunk, plus the answer and slack."""
        return (len(inputs["chunks"]) if inputs else 100_000) + 10


def _gate(value: bool | None, yes: str, no: str) -> str:
    return "?" if value is None else (yes if value else no)
