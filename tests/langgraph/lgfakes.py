"""Test kit for the LangGraph surfaces: a scripted tool-calling chat model that records what it is sent, real
``@tool`` tools with bulky deterministic outputs, and script builders.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

from freemem import FreeMemory
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.pairing import pairing_violations

BUDGET = 8000


class ScriptedModel(FakeMessagesListChatModel):
    """Replays scripted AIMessages (fresh copies, so each gets its own id) and records every request."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        if self.i >= len(self.responses):
            raise AssertionError(f"script exhausted after {self.i} model calls")
        response = self.responses[self.i].model_copy(deep=True)
        self.i += 1
        return ChatResult(generations=[ChatGeneration(message=response)])

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"


# -- bulky tools -------------------------------------------------------------------------------------------
def _rng(*parts: Any) -> random.Random:
    return random.Random("|".join(map(str, parts)))


def file_listing(path: str, lines: int = 110) -> str:
    """An ``ls -l``-like listing (~37 approximate tokens a line: digits count one per two)."""
    rng = _rng("ls", path)
    out = [f"$ ls -l {path}", f"total {lines * 8}"]
    for i in range(lines):
        size = rng.randint(120, 98_000)
        name = f"{path.strip('/').replace('/', '_') or 'root'}/mod_{rng.randint(0, 9999):04d}_{i}.py"
        out.append(f"-rw-r--r--  1 dev staff {size:>7} Mar {rng.randint(1, 28):>2} 12:{rng.randint(0, 59):02d} {name}")
    return "\n".join(out)


def log_with_loop(service: str, repeats: int = 30) -> str:
    """A service log with a traceback repeated ``repeats`` times (a retry loop)."""
    rng = _rng("log", service)
    head = [f"2024-05-0{rng.randint(1, 9)}T10:{m:02d}:00Z INFO {service} worker-{rng.randint(1, 8)} started job "
            f"{rng.randint(1000, 9999)}" for m in range(30)]
    trace = (f"ERROR {service}: retrying after failure\n"
             "Traceback (most recent call last):\n"
             f'  File "/srv/{service}/handlers.py", line 212, in handle\n'
             "    result = client.fetch(key, timeout=timeout)\n"
             f'  File "/srv/{service}/client.py", line 88, in fetch\n'
             "    raise ConnectionResetError('peer closed connection')\n"
             "ConnectionResetError: peer closed connection\n")
    tail = [f"2024-05-09T11:{m:02d}:00Z WARN {service} backoff {m}s" for m in range(20)]
    return "\n".join(head) + "\n" + trace * repeats + "\n".join(tail)


@tool
def list_files(path: str) -> str:
    """List the files under a directory."""
    return file_listing(path)


@tool
def read_log(service: str) -> str:
    """Read a service's log."""
    return log_with_loop(service)


@tool
def grep(pattern: str) -> str:
    """Search the code base."""
    rng = _rng("grep", pattern)
    return "\n".join(f"src/pkg/mod_{rng.randint(0, 999):03d}.py:{rng.randint(1, 900)}: "
                     f"    value = compute_{pattern}(item_{i}, threshold={rng.random():.4f})" for i in range(120))


TOOLS = [list_files, read_log, grep]


# -- scripts -----------------------------------------------------------------------------------------------
def tool_call_message(turn: int, k: int, *, repeat_every: int = 7) -> AIMessage:
    """The k-th tool-calling step of a turn: cycles through the tools; every ``repeat_every``-th step repeats
    an earlier identical call (a superseded result)."""
    choice = k % 3
    if repeat_every and k and k % repeat_every == 0:
        name, args = "list_files", {"path": "/srv/app"}
    elif choice == 0:
        name, args = "list_files", {"path": f"/srv/app/pkg{k}"}
    elif choice == 1:
        name, args = "read_log", {"service": f"svc{k % 5}"}
    else:
        name, args = "grep", {"pattern": f"fn{k}"}
    return AIMessage(content=f"Step {k}: checking {name} {args}.",
                     tool_calls=[{"name": name, "args": args, "id": f"call_{turn}_{k}", "type": "tool_call"}])


def turn_script(turn: int, calls: int) -> list[AIMessage]:
    """``calls`` tool-calling steps, then a final answer."""
    return [tool_call_message(turn, k) for k in range(calls)] + [AIMessage(content=f"Turn {turn} done.")]


def scripted_model(turns: Sequence[int]) -> ScriptedModel:
    """A model for len(turns) turns, turn i making turns[i] tool calls."""
    responses: list[BaseMessage] = []
    for t, calls in enumerate(turns):
        responses.extend(turn_script(t, calls))
    return ScriptedModel(responses=responses)


def make_memory(budget: int | None = BUDGET, **kwargs: Any) -> FreeMemory:
    return FreeMemory(counter="approx", budget=budget, **kwargs)


def assert_requests_ok(model: ScriptedModel, memory: FreeMemory, budget: int | None = BUDGET,
                       start: int = 0) -> list[int]:
    """Every request from ``start`` on is pairing-valid and, with a budget, within it; returns their sizes."""
    sizes = []
    for i, request in enumerate(model.received[start:], start):
        assert pairing_violations(request) == [], (i, pairing_violations(request))
        sizes.append(memory.count_messages(request))
    if budget is not None:
        assert max(sizes) <= budget, (max(sizes), sizes)
    return sizes


class FailingCleaner(Cleaner):
    """A cleaner that always raises."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, context: Any) -> Proposal:
        self.calls += 1
        raise RuntimeError("cleaner exploded")

