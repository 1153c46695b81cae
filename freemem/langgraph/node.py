"""freemem as a node of a hand-built graph, a routing helper, and the ``pre_model_hook`` of the legacy
``langgraph.prebuilt.create_react_agent``.

A hand-built graph::

    from langgraph.graph import START, MessagesState, StateGraph
    from freemem.langgraph import FreeMemoryFields, free_node, route_to_clean

    class State(MessagesState, FreeMemoryFields):
        pass

    memory = FreeMemory(budget=16_000)
    builder = StateGraph(State)
    builder.add_node("freemem", free_node(memory))
    builder.add_node("agent", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "freemem")
    builder.add_edge("freemem", "agent")
    builder.add_conditional_edges("agent", tools_condition)
    # after tools: go through freemem only when a trigger fires
    builder.add_conditional_edges("tools", route_to_clean(memory, clean="freemem", otherwise="agent"))

The node needs the ``messages`` channel to use the ``add_messages`` reducer (as ``MessagesState`` does): the
pruned messages are written back by id. Any other reducer (``operator.add``, none at all) is refused with a
``ConfigError`` at the node's first run, before anything is written (:mod:`freemem.langgraph.channels`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.messages import RemoveMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from freemem.core.errors import ConfigError
from freemem.langgraph._core import TOKENS_KEY, CleanStep, messages_of, thread_id_of
from freemem.langgraph.channels import check_messages_channel, check_state_messages, messages_channel
from freemem.langgraph.request import request_tokens
from freemem.memory import FreeMemory
from freemem.messages import newest_text
from freemem.policy import MemoryPolicy

__all__ = ["FreeNode", "free_node", "pre_model_hook", "route_to_clean", "should_clean"]


class FreeNode(RunnableLambda):
    """A LangGraph node (a ``RunnableLambda`` with a sync and an async function) that cleans the state's
    messages when a trigger fires.

    Build it with :func:`free_node`. ``stats`` holds its process-local counters.
    """

    def __init__(self, step: CleanStep, *, name: str, output: Literal["messages", "llm_input_messages"]) -> None:
        self.step = step
        self.output = output
        # Reducers already seen to take freemem's updates (by identity; a graph's channels are rebuilt from
        # each checkpoint, its reducer function is not).
        self._checked: set[int] = set()
        super().__init__(self._invoke, afunc=self._ainvoke, name=name)

    @property
    def memory(self) -> FreeMemory:
        return self.step.memory

    @property
    def stats(self) -> Any:
        return self.step.stats

    def _invoke(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        self._check_channel(state, config)
        update = self.step.run(state, thread=thread_id_of(config))
        return self._shape(state, update)

    async def _ainvoke(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        self._check_channel(state, config)
        update = await self.step.arun(state, thread=thread_id_of(config))
        return self._shape(state, update)

    def _check_channel(self, state: Any, config: RunnableConfig) -> None:
        """Refuse (ConfigError, not fail-open: the graph is misbuilt) a messages channel whose reducer would
        append freemem's updates instead of applying them. Only for ``output="messages"``: the other output
        writes a plain channel of its own."""
        if self.output != "messages":
            return
        key = self.step.messages_key
        channel = messages_channel(config, key)
        operator = getattr(channel, "operator", None)
        if operator is not None and id(operator) in self._checked:
            return
        if check_messages_channel(config, key, who=f"free_node({self.name!r})"):
            if operator is not None:
                self._checked.add(id(operator))
            return
        check_state_messages(messages_of(state, key), key, who=f"free_node({self.name!r})")

    def _shape(self, state: Any, update: dict[str, Any] | None) -> dict[str, Any]:
        if self.output == "messages":
            return update or {}
        # llm_input_messages: the pruned list goes to the model only; state keeps the originals. The key is
        # a plain channel that keeps its last value, so it is written on every call.
        messages = messages_of(state, self.step.messages_key)
        written = (update or {}).get(self.step.messages_key, [])
        out = {k: v for k, v in (update or {}).items() if k != self.step.messages_key}
        if written and isinstance(written[0], RemoveMessage) and written[0].id == REMOVE_ALL_MESSAGES:
            # The list written whole (a fold, or messages without ids): that list is the model's input.
            out["llm_input_messages"] = list(written[1:])
            return out
        edited = {m.id: m for m in written if getattr(m, "id", None)}
        out["llm_input_messages"] = [edited.get(getattr(m, "id", None), m) for m in messages]
        return out


def with_request(memory: MemoryPolicy, system_prompt: Any = None, tools: Sequence[Any] = ()) -> MemoryPolicy:
    """``memory`` for requests with this system prompt and these tools: the messages get the budget they
    leave (:meth:`FreeMemory.reserved <freemem.FreeMemory.reserved>`); ``memory`` itself when neither is
    given or the policy has no fixed part to reserve.

    Raises:
        ConfigError: the system prompt and the tools alone take the whole budget.
    """
    reserved = getattr(memory, "reserved", None)
    if (system_prompt is None and not tools) or not callable(reserved):
        return memory
    fixed = request_tokens(getattr(memory, "counter", None) or "approx", system_prompt=system_prompt,
                           tools=tools, image_rule=getattr(memory, "image_rule", None))
    total = getattr(memory, "request_budget", None)
    if total is not None and fixed >= total:
        raise ConfigError(f"the system prompt and tool schemas take {fixed:,} tokens, the whole budget of "
                          f"{total:,}: no room is left for messages")
    return reserved(fixed)  # type: ignore[no-any-return]


def free_node(memory: MemoryPolicy | None = None, *, name: str = "freemem", state_fields: bool = True,
              messages_key: str = "messages", system_prompt: Any = None, tools: Sequence[Any] = ()) -> FreeNode:
    """A node that cleans ``state[messages_key]`` when one of ``memory``'s triggers fires.

    Args:
        memory: the engine; ``FreeMemory()`` by default.
        name: the node's run name.
        state_fields: write ``freemem_ledger`` and ``freemem_tokens_at_last_clean`` into state; the graph's
            state schema must declare them (mix in :class:`~freemem.langgraph.FreeMemoryFields`). When False
            the tokens-at-last-clean mark is kept in process memory per thread.
        messages_key: the state key of the message list (an ``add_messages`` channel).
        system_prompt / tools: the system prompt (text or ``SystemMessage``) and the tools your model node
            sends with the messages, when they are not in the message list: the budget is the whole request,
            so the messages get what these leave (see ``docs/budget.md``). Or give
            ``FreeMemory(budget=Budget(..., fixed_tokens=...))``.

    Returns:
        A :class:`FreeNode` (a ``RunnableLambda`` with a sync and an async function): no update when no
        trigger fires, else the edited messages (same ids) plus the ledger fields.

    Raises:
        ConfigError: at the node's first run, when the graph's ``messages_key`` channel is not reduced by
            ``add_messages`` or another reducer that applies ``RemoveMessage`` and replaces by id.
    """
    memory = with_request(memory if memory is not None else FreeMemory(), system_prompt, tools)
    return FreeNode(CleanStep(memory, state_fields=state_fields, messages_key=messages_key), name=name,
                    output="messages")


def should_clean(memory: MemoryPolicy, state: Any, *, messages_key: str = "messages") -> str | None:
    """The reason one of ``memory``'s triggers fires on ``state``, or None.

    Uses ``freemem_tokens_at_last_clean`` from the state when present (counting is cached per text, so the
    node that runs next does not count again).
    """
    messages = messages_of(state, messages_key)
    if not messages:
        return None
    tokens = memory.count(messages)
    last = state.get(TOKENS_KEY, 0) if isinstance(state, dict) else getattr(state, TOKENS_KEY, 0)
    return memory.check(tokens, int(last or 0), newest_text(messages))


def route_to_clean(memory: MemoryPolicy, *, clean: str = "freemem", otherwise: str = "agent",
                   messages_key: str = "messages") -> Callable[[Any], str]:
    """A routing function for ``add_conditional_edges``: to ``clean`` when a trigger fires, else ``otherwise``.

    Example: ``builder.add_conditional_edges("tools", route_to_clean(memory, clean="freemem",
    otherwise="agent"))`` with an edge ``freemem → agent``.
    """

    def route(state: Any) -> str:
        try:
            return clean if should_clean(memory, state, messages_key=messages_key) else otherwise
        except Exception:  # noqa: BLE001 - routing never breaks the turn; the node reports the problem
            return clean

    route.__name__ = f"route_to_{clean}_or_{otherwise}"
    return route


def pre_model_hook(memory: MemoryPolicy | None = None, *,
                   output: Literal["messages", "llm_input_messages"] = "messages",
                   state_fields: bool = False, name: str = "freemem", system_prompt: Any = None,
                   tools: Sequence[Any] = ()) -> FreeNode:
    """A ``pre_model_hook`` for ``langgraph.prebuilt.create_react_agent``.

    Args:
        memory: the engine; ``FreeMemory()`` by default.
        output: ``"messages"`` (default) persists the pruned messages in state (edited messages replace the
            originals by id); ``"llm_input_messages"`` sends the pruned list to the model only and leaves
            state unpruned (every call then cleans the full history again).
        state_fields: also write ``freemem_ledger`` / ``freemem_tokens_at_last_clean``; pass a
            ``state_schema`` that declares them (e.g. ``class S(AgentState, FreeMemoryFields)``). By default
            the prebuilt state has no such keys, and the mark is kept in process memory per thread.
        name: the node's run name.
        system_prompt / tools: the agent's ``prompt`` and ``tools`` (what ``create_react_agent`` sends besides
            the messages): the messages get the budget these leave (see ``docs/budget.md``).
    """
    memory = with_request(memory if memory is not None else FreeMemory(), system_prompt, tools)
    return FreeNode(CleanStep(memory, state_fields=state_fields), name=name, output=output)
