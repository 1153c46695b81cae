"""The served agent's model in the smoke test: a scripted tool-calling chat model the server can import.

The server builds the graph once and runs many threads and turns on that one model object, so the script is
not consumed by a counter: each reply is picked from the conversation itself. A turn's first call (the last
message is the human's) plays step 0; after a tool result whose call id is ``call_<turn>_<k>`` it plays step
``k + 1``; ``<turn>`` is a digest of the human message, so two turns or two threads never share call ids. The
script reads real files of this repository through the agent's workspace tools, twice in places (an earlier
identical read is superseded: the heuristic cleaner frees it), then answers.

``FREEMEM_AGENT_MODEL_FACTORY=tests.server.scripted_model:make_model`` selects it (the repository root must be
on the server's ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

__all__ = ["FINAL_ANSWER", "SCRIPT_CALLS", "ServedScriptedModel", "make_model"]

#: (tool, args) of each step of a turn, in order: bulky real reads, some repeated.
SCRIPT_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "freemem/memory.py", "max_lines": 300}),
    ("list_files", {"path": "freemem"}),
    ("search", {"pattern": r"def \w+\(", "path": "freemem/redis"}),
    ("read_file", {"path": "freemem/memory.py", "max_lines": 300}),
    ("read_file", {"path": "freemem/langgraph/_core.py", "max_lines": 300}),
    ("list_files", {"path": "freemem"}),
    ("read_file", {"path": "freemem/folding.py", "max_lines": 300}),
]
FINAL_ANSWER = "Done reading: the memory engine cleans before each model call."
_CALL_ID = re.compile(r"^call_([0-9a-f]{10})_(\d+)$")


def _turn_tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class ServedScriptedModel(FakeMessagesListChatModel):
    """Replays ``responses`` (one turn's script) at the step the conversation is at; see the module doc."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ServedScriptedModel:
        return self

    def _step(self, messages: list[BaseMessage]) -> tuple[str, int]:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            match = _CALL_ID.match(last.tool_call_id)
            if match is None:
                raise AssertionError(f"scripted model: unexpected tool call id {last.tool_call_id!r}")
            return match.group(1), int(match.group(2)) + 1
        if isinstance(last, HumanMessage):
            return _turn_tag(str(last.content)), 0
        raise AssertionError(f"scripted model: unexpected last message {type(last).__name__}")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tag, step = self._step(messages)
        if step >= len(self.responses):
            raise AssertionError(f"scripted model: the script has {len(self.responses)} steps, asked for {step}")
        response = self.responses[step].model_copy(deep=True)
        if isinstance(response, AIMessage) and response.tool_calls:
            response.tool_calls = [{**call, "id": f"call_{tag}_{step}"} for call in response.tool_calls]
        return ChatResult(generations=[ChatGeneration(message=response)])

    @property
    def _llm_type(self) -> str:
        return "served-scripted-fake"


def make_model() -> ServedScriptedModel:
    """The model ``agent.py`` loads through ``FREEMEM_AGENT_MODEL_FACTORY``."""
    steps = [AIMessage(content=f"Step {k}: {name} {args}.",
                       tool_calls=[{"name": name, "args": args, "id": "placeholder", "type": "tool_call"}])
             for k, (name, args) in enumerate(SCRIPT_CALLS)]
    return ServedScriptedModel(responses=[*steps, AIMessage(content=FINAL_ANSWER)])
