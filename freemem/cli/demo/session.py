"""The demo's recorded session: loading it, the replies and tool outputs it scripts, the replaying model and
the real tools that return the recorded outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import InjectedToolCallId, tool

from freemem.core.errors import ConfigError, FormatError

__all__ = ["SESSION_RESOURCE", "call_id", "load_session", "recorded_tools", "replay_model", "scripted"]

SESSION_RESOURCE = "data/demo_session.json"


# -- the recorded session ---------------------------------------------------------------------------------
def load_session(path: Path | None = None) -> dict[str, Any]:
    """The recorded session: ``{"system", "turns": [{"user", "steps": [{"assistant", "tool_calls": [{"name",
    "args", "output"}]}], "final"}]}``; the shipped one when ``path`` is None."""
    try:
        if path is None:
            text = resources.files("freemem").joinpath(SESSION_RESOURCE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        session = json.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"session file not found: {exc.filename or path}") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"session file is not JSON: {exc}") from None
    if not isinstance(session, dict) or not isinstance(session.get("turns"), list) or not session["turns"]:
        raise FormatError("session file needs a non-empty 'turns' list")
    for i, turn in enumerate(session["turns"]):
        if not isinstance(turn, dict) or "user" not in turn or "final" not in turn:
            raise FormatError(f"turn {i}: needs 'user' and 'final'")
        for j, step in enumerate(turn.get("steps", [])):
            if not step.get("tool_calls") or any("name" not in c or "output" not in c for c in step["tool_calls"]):
                raise FormatError(f"turn {i} step {j}: needs tool_calls with 'name' and 'output'")
    return session


def call_id(turn: int, step: int, k: int) -> str:
    """The tool call id of call ``k`` of step ``step`` of turn ``turn``."""
    return f"call_{turn}_{step}_{k}"


def scripted(session: dict[str, Any]) -> tuple[list[Any], dict[str, str], list[list[Any]]]:
    """The model's replies, the recorded tool outputs by call id, and — per model call — the full unpruned
    history the agent would send without freemem."""
    from langchain_core.messages import (
        AIMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )

    replies: list[Any] = []
    outputs: dict[str, str] = {}
    baselines: list[list[Any]] = []
    history: list[Any] = [SystemMessage(session.get("system") or "")]
    for t, turn in enumerate(session["turns"]):
        history.append(HumanMessage(turn["user"]))
        for s, step in enumerate(turn.get("steps", [])):
            calls = [{"name": c["name"], "args": c.get("args", {}), "id": call_id(t, s, k), "type": "tool_call"}
                     for k, c in enumerate(step["tool_calls"])]
            reply = AIMessage(content=step.get("assistant", ""), tool_calls=calls)
            baselines.append(list(history))
            replies.append(reply)
            history.append(reply)
            for k, c in enumerate(step["tool_calls"]):
                outputs[call_id(t, s, k)] = c["output"]
                history.append(ToolMessage(c["output"], tool_call_id=call_id(t, s, k), name=c["name"]))
        final = AIMessage(content=turn["final"])
        baselines.append(list(history))
        replies.append(final)
        history.append(final)
    return replies, outputs, baselines


def replay_model(replies: list[Any], on_request: Any) -> Any:
    """A LangChain chat model that replays ``replies`` in order, calling ``on_request(i, messages)`` first."""
    from langchain_core.language_models.fake_chat_models import (
        FakeMessagesListChatModel,
    )
    from langchain_core.outputs import ChatGeneration, ChatResult

    class ReplayModel(FakeMessagesListChatModel):
        """Replays the recorded replies and reports every request it is sent."""

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ReplayModel:
            return self

        def _generate(self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            if self.i >= len(self.responses):
                raise ConfigError("the recorded session has no more model replies")
            on_request(self.i, list(messages))
            reply = self.responses[self.i].model_copy(deep=True)
            self.i += 1
            return ChatResult(generations=[ChatGeneration(message=reply)])

        @property
        def _llm_type(self) -> str:
            return "freemem-demo-replay"

    return ReplayModel(responses=replies)


def recorded_tools(outputs: dict[str, str]) -> list[Any]:
    """Real tools whose results are the recorded outputs (looked up by the injected tool call id)."""
    def recorded(call_id: str) -> str:
        return outputs.get(call_id, f"error: no recorded output for {call_id}")

    @tool
    def bash(command: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Run a shell command in the repository and return its output."""
        return recorded(tool_call_id)

    @tool
    def read_file(path: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Return the contents of a file in the repository."""
        return recorded(tool_call_id)

    @tool
    def edit_file(path: str, old: str, new: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Replace ``old`` with ``new`` in a file (append when ``old`` is empty)."""
        return recorded(tool_call_id)

    return [bash, read_file, edit_file]
