"""Whether a graph's messages channel can take freemem's updates.

A clean writes its result as an ``add_messages`` update: edited messages under their own ids (replaced in
place), ``RemoveMessage(id)`` for messages that leave, and ``[RemoveMessage(REMOVE_ALL_MESSAGES), *messages]``
when a fold rewrites the list whole. A channel reduced by anything that does not understand those (``operator.add``
appends them: the state doubles at every fold; a plain ``list`` channel keeps the last write: the edited messages
alone) silently corrupts the thread. :func:`check_messages_channel` refuses such a channel with a clear
:class:`~freemem.core.errors.ConfigError` before the first write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from langchain_core.messages import HumanMessage, RemoveMessage
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from freemem.core.errors import ConfigError

__all__ = ["check_messages_channel", "check_state_messages", "messages_channel", "remove_aware"]

#: The key under which LangGraph hands a running node the function that reads its graph's channels
#: (``langgraph._internal._constants.CONFIG_KEY_READ``; spelled out so no private module is imported).
_CONFIG_KEY_READ = "__pregel_read"


def remove_aware(reducer: Callable[[Any, Any], Any]) -> bool:
    """Whether ``reducer`` applies freemem's updates as ``add_messages`` does: an edited message replaces the
    one with its id, ``RemoveMessage(id)`` removes it, ``RemoveMessage(REMOVE_ALL_MESSAGES)`` clears the list.
    Checked by calling it on three small lists."""
    a_id, b_id = "freemem-probe-a", "freemem-probe-b"
    a, b = HumanMessage("a", id=a_id), HumanMessage("b", id=b_id)
    try:
        edited = reducer([a, b], [HumanMessage("a2", id=a_id)])
        removed = reducer([a, b], [RemoveMessage(id=b_id)])
        rewritten = reducer([a, b], [RemoveMessage(id=REMOVE_ALL_MESSAGES), b])
    except Exception:  # noqa: BLE001 - a reducer that cannot take these updates is not remove-aware
        return False
    return (_ids_texts(edited) == [(a_id, "a2"), (b_id, "b")] and _ids_texts(removed) == [(a_id, "a")]
            and _ids_texts(rewritten) == [(b_id, "b")])


def _ids_texts(value: Any) -> list[tuple[Any, Any]] | None:
    if not isinstance(value, list):
        return None
    return [(getattr(m, "id", None), getattr(m, "content", None)) if not isinstance(m, RemoveMessage)
            else ("removed", None) for m in value]


def messages_channel(config: Mapping[str, Any] | None, key: str) -> Any:
    """The channel object behind state key ``key`` of the graph running the node that got ``config``, or None
    when LangGraph does not expose it (outside a graph, or a LangGraph whose internals moved)."""
    read = ((config or {}).get("configurable") or {}).get(_CONFIG_KEY_READ)
    if not isinstance(read, partial):
        return None
    for arg in (*read.args, *read.keywords.values()):
        if isinstance(arg, Mapping) and key in arg and hasattr(arg[key], "update"):
            return arg[key]
    return None


def check_messages_channel(config: Mapping[str, Any] | None, key: str, *, who: str = "free_node") -> bool:
    """Raise :class:`~freemem.core.errors.ConfigError` when the graph's ``key`` channel cannot take freemem's
    updates (its reducer is not remove-aware, or it has none). True when the channel was seen and is fine;
    False when it could not be seen (the node then checks the state it is given instead)."""
    channel = messages_channel(config, key)
    if channel is None:
        return False
    if not isinstance(channel, BinaryOperatorAggregate):
        raise ConfigError(
            f"{who}: the state key {key!r} has no reducer ({type(channel).__name__}), so freemem's update would "
            f"replace the thread's messages with the edited ones alone. Declare it as "
            f"Annotated[list[AnyMessage], add_messages] (or use MessagesState)")
    if not remove_aware(channel.operator):
        name = getattr(channel.operator, "__name__", type(channel.operator).__name__)
        raise ConfigError(
            f"{who}: the state key {key!r} is reduced by {name}, which does not apply RemoveMessage or replace "
            f"messages by id: every clean would append the edited messages (and a fold the whole list) to the "
            f"thread. Declare it as Annotated[list[AnyMessage], add_messages] (or use MessagesState)")
    return True


def check_state_messages(messages: Any, key: str, *, who: str = "free_node") -> None:
    """The fallback when the channel cannot be seen: a ``RemoveMessage`` left in the state's messages means
    the reducer stored freemem's removals instead of applying them."""
    if isinstance(messages, list) and any(isinstance(m, RemoveMessage) for m in messages):
        raise ConfigError(
            f"{who}: the state key {key!r} holds RemoveMessage entries: its reducer does not apply removals, so "
            f"freemem's updates corrupt the thread. Declare it as Annotated[list[AnyMessage], add_messages]")
