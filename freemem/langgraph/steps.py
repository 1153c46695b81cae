"""A LangGraph node from a policy step written once as a generator (see :mod:`freemem.driving`).

The policies (``summarize``'s InftyThink loop, ``gated``'s reader) write each step once as steps that yield
I/O requests; a graph node is those steps driven sync (``invoke``) and async (``ainvoke``) by the policy's
handlers. :func:`steps_node` builds that node, so no graph repeats the two shells, and :class:`PolicyGraph`
is the shell every policy graph shares (a checkpointer, the graph compiled once).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from langchain_core.runnables import RunnableLambda

from freemem.driving import Handlers, adrive, drive

__all__ = ["PolicyGraph", "steps_node"]


def steps_node(name: str, steps: Callable[[Any], Generator[Any, Any, Any]], handlers: Mapping[str, Handlers], *,
               fail_open: bool = False) -> RunnableLambda[Any, Any]:
    """A graph node (sync and async twins) that runs ``steps(state)`` with ``handlers["sync"]`` or
    ``handlers["async"]``; ``fail_open`` sends a handler's exception to the steps as the answer."""

    def node(state: Any) -> Any:
        return drive(steps(state), handlers["sync"], fail_open=fail_open)

    async def anode(state: Any) -> Any:
        return await adrive(steps(state), handlers["async"], fail_open=fail_open)

    return RunnableLambda(node, afunc=anode, name=name)


class PolicyGraph:
    """Mixin of a policy's graph class (``class InftyThinker(PolicyGraph, InftyThinkerSteps)``): takes the
    policy's arguments plus ``checkpointer`` and compiles :meth:`build_graph` once, on first use of
    :attr:`graph`."""

    def __init__(self, *args: Any, checkpointer: Any = None, **options: Any) -> None:
        super().__init__(*args, **options)
        self.checkpointer = checkpointer
        self._graph: Any = None

    def build_graph(self) -> Any:
        """The compiled graph (with :attr:`checkpointer`)."""
        raise NotImplementedError

    @property
    def graph(self) -> Any:
        """The compiled LangGraph graph (built on first use)."""
        if self._graph is None:
            self._graph = self.build_graph()
        return self._graph
