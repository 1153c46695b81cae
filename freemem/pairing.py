"""Check that a message list is what an OpenAI-style chat API accepts about tool calls.

Every tool message must answer a call of the assistant message right before its run of tool messages, and
every tool call must get its result. freemem never breaks this; the check is for tests, benchmarks and users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freemem.core.views import message_views

__all__ = ["pairing_violations"]


def pairing_violations(messages: Sequence[Any]) -> list[str]:
    """Human-readable problems with tool-call pairing; an empty list means valid."""
    problems: list[str] = []
    views = message_views(messages)
    open_calls: dict[str, int] = {}  # call id -> index of the assistant message that made it
    for view in views:
        if view.role == "tool":
            if view.tool_call_id is None:
                problems.append(f"message {view.index}: tool message without tool_call_id")
            elif view.tool_call_id not in open_calls:
                problems.append(f"message {view.index}: tool result for unknown or closed call {view.tool_call_id}")
            else:
                del open_calls[view.tool_call_id]
            continue
        for call_id, owner in open_calls.items():
            problems.append(f"message {owner}: tool call {call_id} has no result before message {view.index}")
        open_calls = {}
        if view.role == "assistant":
            for call_id, _name, _args in view.tool_calls:
                if call_id in open_calls:
                    problems.append(f"message {view.index}: duplicate tool call id {call_id}")
                open_calls[call_id] = view.index
    # Calls still open at the end are allowed only on the last message (the model awaits their results).
    if open_calls and views and any(idx != views[-1].index for idx in open_calls.values()):
        for call_id, owner in open_calls.items():
            problems.append(f"message {owner}: tool call {call_id} has no result")
    return problems
