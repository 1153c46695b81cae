"""The Free()LM loop for raw reasoning models: the policy's steps, without a graph.

The loop of the Free()LM paper: the base reasoning model thinks for up to ``L`` new tokens (5,000 by default);
the Free-Module (the same model plus a LoRA adapter, usually on the same server) names obsolete spans of the
thinking; freemem deletes them safely; the model continues from the pruned text. It stops when the model ends
its output (an answer), when a total budget of generated tokens is spent, when the round limit is reached, or
when the context window is full.

Generation is a *completion-style continuation*: each request sends the rendered prompt plus the (pruned)
thinking so far as one raw prompt, so the server's prefix cache (SGLang's radix cache, llama.cpp's prompt
cache) reuses everything up to the first deletion. The state (question, thinking, counters, ledger) is plain
JSON. :class:`FreeReasonerSteps` holds the two steps (generate, clean) with their sync and async twins; the
LangGraph graph that runs them with a checkpointer is :class:`freemem.langgraph.reasoner.FreeReasoner`.
Generation requests reuse the HTTP plan of :mod:`freemem.cleaners.http` (retries with backoff), written once
as steps driven sync or async (:mod:`freemem.driving`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from freemem.config import Triggers
from freemem.optional import require_extra

require_extra("serve", "openai", what="freemem.policies.reasoner")

import openai

from freemem.archives import ArchiveFailure, apersist_event, persist_event
from freemem.cleaners.free_module import FreeModuleCleaner
from freemem.cleaners.http import (
    HANDLERS,
    Attempts,
    CircuitBreaker,
    Completion,
    Endpoint,
    EndpointState,
    Sleep,
    is_transient,
)
from freemem.core.errors import ConfigError, ServeError
from freemem.core.ledger import CleanEvent
from freemem.driving import adrive, drive
from freemem.memory import CleanResult, FreeMemory

__all__ = [
    "QWEN3_THINKING_PROMPT",
    "ReasonerResult",
    "ReasonerState",
    "FreeReasonerSteps",
    "Status",
]

#: The raw prompt of a Qwen3-style thinking model (ChatML), opened inside the assistant's ``<think>`` block.
QWEN3_THINKING_PROMPT = "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n"

#: ``running`` while the loop goes on; then why it stopped: the model ended its output after ``</think>``
#: (``answer``) or without it (``stopped``), the total token budget (``budget``), the round limit (``rounds``),
#: or the context window (``context``).
Status = Literal["running", "answer", "stopped", "budget", "rounds", "context"]


class ReasonerState(TypedDict, total=False):
    """The graph's state: plain JSON, so any checkpointer can persist it."""

    question: str
    #: The generated text so far (thinking, then ``</think>`` and the answer), pruned by every clean.
    text: str
    status: Status
    rounds: int  # generation requests made
    generated_tokens: int  # new tokens generated, all rounds together (what the budget counts)
    context_tokens: int  # estimate of prompt + text in tokens, as the server counts them
    finish_reason: str | None
    #: One entry per round: ``{"round", "generate": {...}, "clean": CleanEvent dict | None}``.
    ledger: list[dict[str, Any]]


@dataclass
class ReasonerResult:
    """What a run ended with."""

    question: str
    text: str
    status: Status
    rounds: int
    generated_tokens: int
    context_tokens: int
    ledger: list[dict[str, Any]] = field(default_factory=list)
    thread_id: str | None = None
    think_end: str = "</think>"

    @property
    def thinking(self) -> str:
        """The (pruned) thinking: the text before ``</think>``, or all of it while the model is still thinking."""
        head, sep, _ = self.text.partition(self.think_end)
        return head if sep else self.text

    @property
    def answer(self) -> str | None:
        """The text after ``</think>``, stripped; None when the model never closed its thinking."""
        _, sep, tail = self.text.partition(self.think_end)
        return tail.strip() if sep else None

    @property
    def tokens_freed(self) -> int:
        """Tokens the cleans removed, all rounds together."""
        return sum((entry.get("clean") or {}).get("tokens_freed", 0) for entry in self.ledger)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, thread_id: str | None = None,
                   think_end: str = "</think>") -> ReasonerResult:
        return cls(question=state.get("question", ""), text=state.get("text", ""),
                   status=state.get("status", "running"), rounds=state.get("rounds", 0),
                   generated_tokens=state.get("generated_tokens", 0),
                   context_tokens=state.get("context_tokens", 0), ledger=list(state.get("ledger", [])),
                   thread_id=thread_id, think_end=think_end)


@dataclass
class _Generation:
    """One completion request's answer."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    latency_s: float
    attempts: int


class FreeReasonerSteps:
    """The Free()LM reasoning loop's steps (generate L tokens → clean with the Free-Module → continue), without
    a graph: :class:`freemem.langgraph.reasoner.FreeReasoner` wires them into one (with a checkpointer).

    Args:
        base_url: the OpenAI-compatible server of the base reasoning model (``/v1`` is appended to a bare
            host). The default cleaner uses the same server with the adapter.
        model: the base model's request name (no adapter: generation is the raw reasoning model).
        memory: the cleaning engine; default ``FreeMemory(FreeModuleCleaner(base_url, model=model,
            adapter=adapter, **cleaner_options))``. Its protections apply: the question and the recency window
            at the end (the model continues from there) are never deleted.
        adapter: the Free-Module's served adapter name, for the default cleaner.
        cleaner_options: more keyword arguments for the default :class:`FreeModuleCleaner`
            (``structured_output="json_object"`` for llama-cpp-python, ``template=...``, timeouts...).
        chunk_tokens: ``L``, new thinking tokens per round before a clean (the paper's 5,000).
        max_total_tokens: budget of generated tokens over the whole run.
        max_rounds: the most generation requests in one run.
        context_length: the server's context window; a round asks for no more tokens than fit, and the run
            stops with status ``context`` when nothing fits. None: not checked.
        prompt: the raw prompt around the question: a string with ``{question}`` (default
            :data:`QWEN3_THINKING_PROMPT`) or a callable ``question -> prompt``. It must open the thinking block.
        think_end: the marker that closes the thinking; after it the model writes its answer and no further
            clean happens.
        temperature, top_p, seed, stop: sampling settings of the generation requests.
        timeout: seconds per generation request; ``max_retries``: further attempts on connection errors,
            timeouts and 5xx answers (with exponential backoff from ``backoff_s``).
        extra_body: extra JSON fields of every generation request (e.g. SGLang's ``{"top_k": 20}``).
        api_key: sent to the server (local servers ignore it; ``OPENAI_API_KEY`` is never read).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        memory: FreeMemory | None = None,
        adapter: str | None = "free",
        cleaner_options: Mapping[str, Any] | None = None,
        chunk_tokens: int = 5000,
        max_total_tokens: int = 32768,
        max_rounds: int = 32,
        context_length: int | None = None,
        prompt: str | Callable[[str], str] = QWEN3_THINKING_PROMPT,
        think_end: str = "</think>",
        temperature: float = 0.6,
        top_p: float | None = 0.95,
        seed: int | None = None,
        stop: Sequence[str] | None = ("<|im_end|>", "<|endoftext|>"),
        timeout: float = 600.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        extra_body: Mapping[str, Any] | None = None,
        api_key: str = "EMPTY",
    ) -> None:
        if chunk_tokens < 1 or max_total_tokens < 1 or max_rounds < 1:
            raise ConfigError("chunk_tokens, max_total_tokens and max_rounds must be >= 1")
        if context_length is not None and context_length < 1:
            raise ConfigError("context_length must be >= 1")
        if timeout <= 0 or max_retries < 0 or backoff_s < 0:
            raise ConfigError("timeout > 0, max_retries >= 0 and backoff_s >= 0 are required")
        if isinstance(prompt, str) and "{question}" not in prompt:
            raise ConfigError("the prompt template needs a {question} placeholder")
        if not think_end:
            raise ConfigError("think_end must be a non-empty marker")
        self.endpoint = Endpoint(base_url)
        self.model = model
        if memory is None:
            cleaner = FreeModuleCleaner(self.endpoint, model=model, adapter=adapter, **dict(cleaner_options or {}))
            # Rounds come from this loop (every chunk), not from FreeMemory's own triggers.
            memory = FreeMemory(cleaner, triggers=Triggers(every_tokens=None, on_loop=False))
        elif cleaner_options:
            raise ConfigError("cleaner_options only apply to the default cleaner; configure memory's cleaner instead")
        self.memory = memory
        self.chunk_tokens = chunk_tokens
        self.max_total_tokens = max_total_tokens
        self.max_rounds = max_rounds
        self.context_length = context_length
        self.prompt = prompt
        self.think_end = think_end
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.stop = list(stop) if stop else None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        self.api_key = api_key
        # The breaker of the shared client holder is not used for generation: a reasoning run has one server.
        self._client = EndpointState(self.endpoint, CircuitBreaker())

    # -- pure pieces (shared by sync and async) ----------------------------------------------------------

    def render_prompt(self, question: str) -> str:
        """The raw prompt that opens the thinking for ``question``."""
        if callable(self.prompt):
            return self.prompt(question)
        return self.prompt.replace("{question}", question)

    def request_for(self, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ``completions.create`` arguments of the next round, or None when nothing may be generated."""
        budget_left = self.max_total_tokens - state.get("generated_tokens", 0)
        max_tokens = min(self.chunk_tokens, budget_left)
        if self.context_length is not None and state.get("context_tokens"):
            max_tokens = min(max_tokens, self.context_length - state["context_tokens"])
        if max_tokens < 1:
            return None
        kwargs: dict[str, Any] = {
            "model": self.model,
            "prompt": self.render_prompt(state["question"]) + state.get("text", ""),
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.stop:
            kwargs["stop"] = self.stop
        if self.extra_body:
            kwargs["extra_body"] = dict(self.extra_body)
        return kwargs

    def _out_of_room(self, state: Mapping[str, Any]) -> Status:
        if state.get("generated_tokens", 0) >= self.max_total_tokens:
            return "budget"
        return "context"

    def _after_generation(self, state: Mapping[str, Any], request: Mapping[str, Any], gen: _Generation) -> dict[str, Any]:
        text = state.get("text", "") + gen.text
        rounds = state.get("rounds", 0) + 1
        generated = state.get("generated_tokens", 0) + gen.completion_tokens
        context_tokens = gen.prompt_tokens + gen.completion_tokens
        status: Status = "running"
        if gen.finish_reason == "stop":
            status = "answer" if self.think_end in text else "stopped"
        elif generated >= self.max_total_tokens:
            status = "budget"
        elif rounds >= self.max_rounds:
            status = "rounds"
        elif self.context_length is not None and context_tokens >= self.context_length:
            status = "context"
        entry = {
            "round": rounds,
            "generate": {
                "max_tokens": request["max_tokens"],
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": gen.completion_tokens,
                "cached_tokens": gen.cached_tokens,
                "finish_reason": gen.finish_reason,
                "latency_s": round(gen.latency_s, 6),
                "attempts": gen.attempts,
            },
            "clean": None,
        }
        return {"text": text, "rounds": rounds, "generated_tokens": generated, "context_tokens": context_tokens,
                "finish_reason": gen.finish_reason, "status": status,
                "ledger": [*state.get("ledger", []), entry]}

    def _clean_input(self, state: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(head, text)`` for the cleaner: the question as a protected head, then the thinking. None once the
        thinking is closed (the answer is never cleaned)."""
        thinking = state.get("text", "")
        if not thinking or self.think_end in thinking:
            return None
        head = f"{state['question']}\n\n"
        return head, head + thinking

    def _after_clean(self, state: Mapping[str, Any], head: str, result: CleanResult | None,
                     error: BaseException | None = None, *,
                     failure: ArchiveFailure | None = None) -> dict[str, Any]:
        ledger = [dict(entry) for entry in state.get("ledger", [])]
        if result is None:  # the engine itself failed (not the cleaner: FreeMemory already fails open there)
            event = CleanEvent(trigger="every_chunk", error=f"{type(error).__name__}: {error}")
            update: dict[str, Any] = {}
        elif failure is not None:  # fail closed: the removed text would be stored nowhere, so the edit goes
            event = result.event
            event.error = failure.message
            event.tokens_after = event.tokens_before
            self.memory.stats.errors += 1
            update = {}
        else:
            event = result.event
            update = {}
            new_text = result.text or ""
            if result.changed and new_text.startswith(head):
                update["text"] = new_text[len(head):]
                freed = max(0, event.tokens_before - event.tokens_after)
                update["context_tokens"] = max(0, state.get("context_tokens", 0) - freed)
            elif result.changed:  # cannot happen while the question is protected; never lose the thinking
                event.note = "cleaned text lost its question head; round discarded"
        if ledger:
            ledger[-1]["clean"] = event.to_dict()
        update["ledger"] = ledger
        return update

    # -- the loop's two steps, sync and async (a graph node each) ----------------------------------------

    def initial_state(self, question: str) -> ReasonerState:
        """The state a new run starts from."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the question must be a non-empty string")
        return ReasonerState(question=question, text="", status="running", rounds=0, generated_tokens=0,
                             context_tokens=0, finish_reason=None, ledger=[])

    def generate(self, state: ReasonerState) -> dict[str, Any]:
        """One generation request of at most L tokens; the state update (status says whether to go on)."""
        request = self.request_for(state)
        if request is None:
            return {"status": self._out_of_room(state)}
        return self._after_generation(state, request, drive(self._completion_steps(request), HANDLERS["sync"]))

    async def agenerate(self, state: ReasonerState) -> dict[str, Any]:
        """Async twin of :meth:`generate`."""
        request = self.request_for(state)
        if request is None:
            return {"status": self._out_of_room(state)}
        return self._after_generation(state, request,
                                      await adrive(self._completion_steps(request), HANDLERS["async"]))

    def clean(self, state: ReasonerState, thread_id: str | None = None) -> dict[str, Any]:
        """Clean the thinking once (fail open: an engine failure is a ledger entry, the reasoning goes on
        unpruned). The removed spans go to the memory's archive under ``thread_id`` (default ``"default"``);
        when the archive cannot take them the edit is not kept (fail closed, the ledger entry says why)."""
        prepared = self._clean_input(state)
        if prepared is None:
            return {}
        head, text = prepared
        try:
            result = self.memory.clean_text(text, question=head, trigger="every_chunk")
        except Exception as exc:  # noqa: BLE001 - fail open: the reasoning goes on unpruned
            return self._after_clean(state, head, None, exc)
        failure = persist_event(self.memory.archive, thread_id, result.event) if result.event.applied else None
        return self._after_clean(state, head, result, failure=failure)

    async def aclean(self, state: ReasonerState, thread_id: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`clean`."""
        prepared = self._clean_input(state)
        if prepared is None:
            return {}
        head, text = prepared
        try:
            result = await self.memory.aclean_text(text, question=head, trigger="every_chunk")
        except Exception as exc:  # noqa: BLE001
            return self._after_clean(state, head, None, exc)
        failure = (await apersist_event(self.memory.archive, thread_id, result.event)
                   if result.event.applied else None)
        return self._after_clean(state, head, result, failure=failure)

    # -- HTTP --------------------------------------------------------------------------------------------

    def _generation(self, response: Any, started: float, attempts: int) -> _Generation:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise ServeError(f"{self.endpoint.base_url} returned no choices for a generation request")
        choice = choices[0]
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        text = getattr(choice, "text", None) or ""
        if not completion_tokens and text:
            completion_tokens = self.memory.count_text(text)  # a server without usage: estimate
        return _Generation(text=text, finish_reason=getattr(choice, "finish_reason", None),
                           prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                           cached_tokens=int(cached) if isinstance(cached, int) else None,
                           latency_s=time.perf_counter() - started, attempts=attempts)

    def _give_up(self, exc: openai.OpenAIError, attempts: int) -> ServeError:
        return ServeError(f"generation at {self.endpoint.base_url} failed after {attempts} attempt(s): "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

    def _completion_steps(self, request: Mapping[str, Any]) -> Generator[Sleep | Completion, Any, _Generation]:
        """One generation request with retries on transient failures (connection, timeout, 5xx) and
        exponential backoff, by the shared plan of :mod:`freemem.cleaners.http` (one server, no breaker: the
        run itself stops on failure)."""
        started = time.perf_counter()
        plan = Attempts([self._client], max_retries=self.max_retries, timeout=self.timeout,
                        backoff_s=self.backoff_s, name="generation", use_breakers=False, skip_timed_out=False)
        while (step := plan.next()) is not None:
            state, delay, timeout = step
            if delay:
                yield Sleep(delay)
            try:
                response = yield Completion(state, "completions", request, timeout, self.api_key, self.timeout)
            except openai.OpenAIError as exc:
                if not is_transient(exc):
                    raise self._give_up(exc, plan.attempts) from exc
                plan.failed(state, exc)
                continue
            return self._generation(response, started, plan.attempts)
        last = plan.errors[-1][1]
        raise self._give_up(last, plan.attempts) from last

    def close(self) -> None:
        """Close the sync HTTP client of generation (and of the default cleaner)."""
        self._client.close()
        close = getattr(self.memory.cleaner, "close", None)
        if callable(close):
            close()

    async def aclose(self) -> None:
        """Close the async HTTP clients created on the running loop."""
        await self._client.aclose()
        aclose = getattr(self.memory.cleaner, "aclose", None)
        if callable(aclose):
            await aclose()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.endpoint.base_url!r}, model={self.model!r}, "
                f"chunk_tokens={self.chunk_tokens}, max_total_tokens={self.max_total_tokens}, "
                f"cleaner={self.memory.cleaner!r})")


