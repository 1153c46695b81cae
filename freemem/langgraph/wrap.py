"""``wrap()``: freemem around any compiled LangGraph graph with a ``messages`` channel.

The result is an outer graph ``START → freemem → agent → END``: the ``freemem`` node cleans the thread's
messages when a trigger fires (so multi-turn chat is cleaned *between* turns) and ``agent`` runs your graph as
a subgraph on the pruned messages. The checkpointer goes on the outer graph, which therefore holds the thread —
pruned — and freemem's ledger; your graph runs as a subgraph of each turn::

    from freemem import FreeMemory
    from freemem.langgraph import wrap

    chat = wrap(my_graph, memory=FreeMemory(budget=16_000), checkpointer=InMemorySaver())
    chat.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})

``invoke``, ``ainvoke``, ``stream`` and ``astream`` take the same input and return the same output keys as your
graph. Stream modes work as on any graph with a subgraph: pass ``subgraphs=True`` to see your graph's own
updates and its model tokens (``stream_mode="messages"``), namespaced under ``("agent:<task id>",)``.

Messages your graph removes (``RemoveMessage``, e.g. a summarizing middleware) are removed from the outer
state too; when your graph reorders or rewrites its history, the outer history is replaced whole.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.messages import AnyMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages
from langgraph.managed.base import is_managed_value
from langgraph.pregel import Pregel
from typing_extensions import TypedDict

from freemem.core.errors import ConfigError
from freemem.langgraph._core import LAST_CALL_KEY, LEDGER_KEY, TOKENS_KEY, CleanStep, FreeMemoryFields
from freemem.langgraph.node import free_node, with_request
from freemem.memory import FreeMemory
from freemem.policy import MemoryPolicy

__all__ = ["wrap"]

_FREEMEM_KEYS = (LEDGER_KEY, TOKENS_KEY, LAST_CALL_KEY)


def wrap(graph: Pregel, memory: MemoryPolicy | None = None, *, checkpointer: Any = None, store: Any = None,
         name: str | None = None, clean_node: str = "freemem", agent_node: str = "agent",
         system_prompt: Any = None, tools: Sequence[Any] = ()) -> Any:
    """Put freemem in front of ``graph``: clean the thread between turns, then run ``graph`` as a subgraph.

    Args:
        graph: a compiled graph (``StateGraph(...).compile()``, ``create_agent(...)``,
            ``create_react_agent(...)``) whose state has a ``messages`` channel.
        memory: the engine; ``FreeMemory()`` by default.
        checkpointer: the thread's checkpointer, on the outer graph. When None and ``graph`` was compiled with
            a checkpointer, that one moves to the outer graph (the subgraph then runs without its own, so the
            thread is kept once).
        store: a LangGraph store for the outer graph (the subgraph sees it).
        name: the outer graph's name (default: ``"<graph name>+freemem"``).
        clean_node / agent_node: the two nodes' names.
        system_prompt / tools: what ``graph``'s model receives besides the messages (its system prompt and
            bound tools), so the messages get the budget these leave (see ``docs/budget.md``).

    Returns:
        The compiled outer graph (a ``CompiledStateGraph``).

    Raises:
        ConfigError: ``graph`` is not a compiled graph or has no ``messages`` channel.
    """
    if not isinstance(graph, Pregel):
        raise ConfigError(f"wrap() takes a compiled LangGraph graph, got {type(graph).__name__}")
    if "messages" not in graph.channels:
        raise ConfigError("wrap() needs a graph whose state has a 'messages' channel")
    memory = with_request(memory if memory is not None else FreeMemory(), system_prompt, tools)
    inner_saver = graph.checkpointer
    if isinstance(inner_saver, BaseCheckpointSaver) or inner_saver is True:
        if checkpointer is None and isinstance(inner_saver, BaseCheckpointSaver):
            checkpointer = inner_saver
        elif inner_saver is True:
            warnings.warn("freemem.wrap: the graph's own checkpointer=True is dropped; the outer graph keeps "
                          "the thread", RuntimeWarning, stacklevel=2)
        graph = graph.copy(update={"checkpointer": None})

    state_schema, input_schema, output_schema = _schemas(graph)
    builder: StateGraph = StateGraph(state_schema, input_schema=input_schema, output_schema=output_schema)
    builder.add_node(clean_node, free_node(memory, name=clean_node))
    builder.add_node(agent_node, _agent_node(graph, agent_node, memory))
    builder.add_edge(START, clean_node)
    builder.add_edge(clean_node, agent_node)
    builder.add_edge(agent_node, END)
    outer = builder.compile(checkpointer=checkpointer, store=store,
                            name=name or f"{getattr(graph, 'name', None) or 'graph'}+freemem")
    outer.freemem_memory = memory  # type: ignore[attr-defined]
    outer.freemem_inner = graph  # type: ignore[attr-defined]
    return outer


# -- the subgraph node ------------------------------------------------------------------------------------
def _agent_node(graph: Pregel, name: str, memory: MemoryPolicy) -> RunnableLambda:
    """A node that runs ``graph`` on the outer state and turns its output into an outer update.

    For a memory that schedules by prompt-cache cost, the update also records when the turn ended as the
    thread's last model call (the clean node sees only the turn's start; the cache was last used at its end).
    """
    step = CleanStep(memory)

    def stamped(update: Any) -> Any:
        if not step.uses_idle or not isinstance(update, dict):
            return update
        return {**update, LAST_CALL_KEY: step.clock()}

    def call(state: dict[str, Any], config: RunnableConfig) -> Any:
        out = graph.invoke(_inner_input(state), config)
        return stamped(_as_update(state, out))

    async def acall(state: dict[str, Any], config: RunnableConfig) -> Any:
        out = await graph.ainvoke(_inner_input(state), config)
        return stamped(_as_update(state, out))

    return RunnableLambda(call, afunc=acall, name=name)


def _inner_input(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in _FREEMEM_KEYS}


def _as_update(state: dict[str, Any], out: Any) -> Any:
    """The subgraph's final values as an update of the outer state.

    Unchanged messages are left out; edited ones (same id) replace theirs; new ones are appended; messages the
    subgraph removed are removed. When the subgraph reordered its history or put new messages before old ones,
    the history is replaced whole.
    """
    if not isinstance(out, dict):
        return out
    update = {k: v for k, v in out.items() if k not in _FREEMEM_KEYS and k != "messages"}
    if "messages" not in out:
        return update
    update["messages"] = messages_update(state.get("messages") or [], out["messages"] or [])
    return update


def messages_update(before: Sequence[Any], after: Sequence[Any]) -> list[Any]:
    """The smallest ``add_messages`` update that turns ``before`` into ``after`` (lists of messages with ids)."""
    old = {getattr(m, "id", None): m for m in before}
    if None in old or any(getattr(m, "id", None) is None for m in after):
        return [RemoveMessage(id=REMOVE_ALL_MESSAGES), *after]
    after_ids = [m.id for m in after]
    kept = [i for i in after_ids if i in old]
    kept_set = set(kept)
    # Order of surviving messages must be unchanged and every new message must come after them.
    first_new = next((k for k, i in enumerate(after_ids) if i not in old), len(after_ids))
    if kept != [m.id for m in before if m.id in kept_set] or any(i in old for i in after_ids[first_new:]):
        return [RemoveMessage(id=REMOVE_ALL_MESSAGES), *after]
    removed = [RemoveMessage(id=m.id) for m in before if m.id not in kept_set]
    changed = [m for m in after if m.id not in old or (old[m.id] is not m and old[m.id] != m)]
    return [*removed, *changed]


# -- schemas ----------------------------------------------------------------------------------------------
def _schemas(graph: Pregel) -> tuple[type, type | None, type | None]:
    """The outer state schema (the subgraph's channels, ``messages`` with ``add_messages``, freemem's fields)
    and the subgraph's input and output schemas, so the wrapped graph takes and returns what it did."""
    builder = getattr(graph, "builder", None)
    fields: dict[str, Any] = {}
    input_schema = output_schema = None
    if isinstance(builder, StateGraph):
        for schema in (builder.state_schema, builder.input_schema, builder.output_schema):
            for key, hint in _hints(schema).items():
                if key not in fields and not _is_managed(hint):
                    fields[key] = hint
        input_schema = builder.input_schema if builder.input_schema is not builder.state_schema else None
        output_schema = builder.output_schema if builder.output_schema is not builder.state_schema else None
    fields["messages"] = Annotated[list[AnyMessage], add_messages]
    fields.update(typing.get_type_hints(FreeMemoryFields, include_extras=True))
    state = TypedDict("FreememWrappedState", {k: _not_required(v) for k, v in fields.items()},  # type: ignore[misc]
                      total=False)
    if input_schema is None and output_schema is None:
        # A plain graph: take and return what the subgraph does (messages and its own keys), not freemem's.
        io = TypedDict("FreememWrappedIO", {k: _not_required(v) for k, v in fields.items()  # type: ignore[misc]
                                            if k not in _FREEMEM_KEYS}, total=False)
        return state, io, io
    return state, input_schema or _io(fields), output_schema or _io(fields)


def _io(fields: dict[str, Any]) -> type:
    return TypedDict("FreememWrappedIO", {k: _not_required(v) for k, v in fields.items()  # type: ignore[misc]
                                          if k not in _FREEMEM_KEYS}, total=False)


def _hints(schema: Any) -> dict[str, Any]:
    if schema is None:
        return {}
    try:
        return typing.get_type_hints(schema, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: fall back to raw annotations
        return dict(getattr(schema, "__annotations__", {}))


def _strip_required(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (NotRequired, typing.Required) or str(origin).endswith(("NotRequired", "Required")):
        return typing.get_args(hint)[0]
    return hint


def _not_required(hint: Any) -> Any:
    return NotRequired[_strip_required(hint)]


def _is_managed(hint: Any) -> bool:
    hint = _strip_required(hint)
    if is_managed_value(hint):
        return True
    return any(is_managed_value(m) for m in getattr(hint, "__metadata__", ()))
