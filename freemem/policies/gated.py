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

Inference modes (:class:`GatedReader` arguments): ``use_exit_gate=True`` stops at the step whose exit gate
says ``end``; ``use_exit_gate=False`` reads everything (the gate is still parsed and recorded).
``use_update_gate=False`` is MemAgent: the memory is overwritten with the candidate every step.

Parsing is strict — each tag exactly once, the gate values exactly ``yes``/``no`` and ``continue``/``end`` —
and a malformed step is asked again (``step_retries`` times), then falls back: update gate unreadable or no
candidate → keep the old memory; exit gate unreadable → continue (never stop on a malformed step).

:class:`GatedReader` is a LangGraph graph (``read`` once per chunk, then ``answer``), each step persisted by
the checkpointer; :meth:`GatedReader.as_tool` makes it a LangChain tool an agent can call on a long document.
Every step writes a :class:`~freemem.ledger.CleanEvent` and a :class:`~freemem.policies.summarize.CallRecord`
(tokens per call), the step record keeps the memory size, and the result says where the exit happened.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypedDict

from freemem.driving import adrive, drive
from freemem.errors import ConfigError
from freemem.messages import answer_text, model_usage
from freemem.ledger import CleanEvent
from freemem.policies.summarize import (
    CallMetrics,
    CallRecord,
    bind_max_tokens,
    prompt_tokens,
)
from freemem.tokens import TokenCounter, cached_counter

__all__ = [
    "GateDecision",
    "GatedReader",
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


class GatedReader:
    """GRU-Mem's gated memory reader as a LangGraph graph, for any LangChain chat model.

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
        checkpointer: a LangGraph checkpointer; then pass ``{"configurable": {"thread_id": ...}}``.

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
        checkpointer: Any = None,
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
        self.checkpointer = checkpointer
        self._graph: Any = None

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

    def _read_steps(self, state: ReaderState) -> Generator[Any, Any, dict[str, Any]]:
        """One reading step, written once: yields each prompt (a retry re-asks with the problems stated),
        receives the model's response; returns the state update."""
        t0 = time.perf_counter()
        calls: list[dict[str, Any]] = []
        problems: list[str] = []
        decision = GateDecision(None, None, None, ("not asked",))
        for attempt in range(1, self.step_retries + 2):
            prompt = self._step_prompt(state, problems)
            c0 = time.perf_counter()
            response = yield prompt
            decision, record = self._parse_call(state, prompt, response, c0)
            calls.append(record)
            if decision.ok:
                break
            problems = list(decision.problems)
        update = self._decide(state, decision, attempt, sum(c["prompt_tokens"] for c in calls),
                              sum(c["output_tokens"] for c in calls), t0)
        update["calls"] = calls
        return update

    def _memory_model(self) -> Any:
        return bind_max_tokens(self.model, self.max_tokens_param, self.memory_tokens + self.think_tokens)

    def _read(self, state: ReaderState) -> dict[str, Any]:
        return drive(self._read_steps(state), self._memory_model().invoke)

    async def _aread(self, state: ReaderState) -> dict[str, Any]:
        return await adrive(self._read_steps(state), self._memory_model().ainvoke)

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

    def _answer(self, state: ReaderState) -> dict[str, Any]:
        c0 = time.perf_counter()
        prompt = self._answer_prompt(state)
        return self._after_answer(state, prompt, self.answer_model.invoke(prompt), c0)

    async def _aanswer(self, state: ReaderState) -> dict[str, Any]:
        c0 = time.perf_counter()
        prompt = self._answer_prompt(state)
        return self._after_answer(state, prompt, await self.answer_model.ainvoke(prompt), c0)

    @staticmethod
    def _route(state: ReaderState) -> str:
        if state.get("done") or state.get("position", 0) >= len(state.get("chunks", [])):
            return "answer"
        return "read"

    # -- graph ------------------------------------------------------------------------------------------
    @property
    def graph(self) -> Any:
        """The compiled LangGraph graph: ``read`` once per chunk (state persisted per step), then ``answer``."""
        if self._graph is None:
            from langchain_core.runnables import RunnableLambda
            from langgraph.graph import END, START, StateGraph

            builder = StateGraph(ReaderState)
            builder.add_node("read", RunnableLambda(self._read, afunc=self._aread, name="read"))
            builder.add_node("answer", RunnableLambda(self._answer, afunc=self._aanswer, name="answer"))
            builder.add_conditional_edges(START, self._route, {"read": "read", "answer": "answer"})
            builder.add_conditional_edges("read", self._route, {"read": "read", "answer": "answer"})
            builder.add_edge("answer", END)
            self._graph = builder.compile(checkpointer=self.checkpointer, name="GatedReader")
        return self._graph

    def _input(self, question: str | None, document: str | None) -> dict[str, Any] | None:
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
    def _config(config: Mapping[str, Any] | None, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        cfg = dict(config or {})
        if "recursion_limit" not in cfg:  # one graph step per chunk, plus the answer
            cfg["recursion_limit"] = (len(inputs["chunks"]) if inputs else 100_000) + 10
        return cfg

    def invoke(self, question: str | None, document: str | None = None,
               config: Mapping[str, Any] | None = None) -> ReadResult:
        """Read ``document`` to answer ``question``. ``invoke(None, None, config)`` resumes the thread named in
        ``config`` from its last checkpoint (needs a checkpointer)."""
        inputs = self._input(question, document)
        state = self.graph.invoke(inputs, self._config(config, inputs))
        return ReadResult.from_state(state)

    async def ainvoke(self, question: str | None, document: str | None = None,
                      config: Mapping[str, Any] | None = None) -> ReadResult:
        """Async twin of :meth:`invoke`."""
        inputs = self._input(question, document)
        state = await self.graph.ainvoke(inputs, self._config(config, inputs))
        return ReadResult.from_state(state)

    # -- as a tool --------------------------------------------------------------------------------------
    def as_tool(self, *, name: str = "read_long_document",
                description: str | None = None,
                documents: Mapping[str, str] | Callable[[str], str] | None = None) -> Any:
        """This reader as a LangChain tool (sync and async).

        Without ``documents`` the tool takes ``question`` and ``document`` (the text). With ``documents`` — a
        mapping or a function from a name to the text — it takes ``question`` and ``source`` (the name), so an
        agent never has to paste a long document into a tool call. The tool returns the answer, the memory
        the answer came from, and where reading stopped.
        """
        from langchain_core.tools import StructuredTool
        from pydantic import BaseModel, Field

        def lookup(source: str) -> str:
            if documents is None:
                raise ConfigError("this tool has no document store")
            if callable(documents):
                return documents(source)
            if source not in documents:
                raise ConfigError(f"unknown source {source!r}; known: {', '.join(sorted(documents))}")
            return documents[source]

        def render(result: ReadResult) -> str:
            where = (f"stopped after chunk {result.exit_position + 1} of {result.chunks_total}"
                     if result.exit_position is not None else f"read {result.chunks_read} chunks")
            return f"Answer: {result.answer}\nMemory: {result.memory}\n({where})"

        if documents is None:
            class TextArgs(BaseModel):
                question: str = Field(description="what to find out from the document")
                document: str = Field(description="the full text of the long document")

            def run_text(question: str, document: str) -> str:
                return render(self.invoke(question, document))

            async def arun_text(question: str, document: str) -> str:
                return render(await self.ainvoke(question, document))

            return StructuredTool.from_function(
                func=run_text, coroutine=arun_text, name=name, args_schema=TextArgs,
                description=description or "Read a long document chunk by chunk with a bounded memory and "
                                           "answer a question about it.")

        class SourceArgs(BaseModel):
            question: str = Field(description="what to find out from the document")
            source: str = Field(description="the name of the document to read")

        def run_source(question: str, source: str) -> str:
            return render(self.invoke(question, lookup(source)))

        async def arun_source(question: str, source: str) -> str:
            return render(await self.ainvoke(question, lookup(source)))

        known = f" Known documents: {', '.join(sorted(documents))}." if isinstance(documents, Mapping) else ""
        return StructuredTool.from_function(
            func=run_source, coroutine=arun_source, name=name, args_schema=SourceArgs,
            description=(description or "Read a long document chunk by chunk with a bounded memory and answer a "
                                        "question about it.") + known)


def _gate(value: bool | None, yes: str, no: str) -> str:
    return "?" if value is None else (yes if value else no)
