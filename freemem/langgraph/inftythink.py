"""InftyThinker: the InftyThink loop (:mod:`freemem.policies.inftythink`) as a LangGraph graph.

Graph: ``segment`` (one round of at most ``segment_tokens``) → ``summarize`` (only when the round ended
without a usable summary; bounded retries, then a deterministic fallback) → ``segment`` … until a final
answer, or ``conclude`` (one "answer now" call) at the round cap. Each node's state is persisted by the
checkpointer, so a crashed run resumes with ``invoke(None, config)`` from the last finished step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph

from freemem.langgraph.steps import PolicyGraph, steps_node
from freemem.policies.inftythink import InftyThinkerSteps, ThinkResult, ThinkState

__all__ = ["InftyThinker"]


class InftyThinker(PolicyGraph, InftyThinkerSteps):
    """InftyThink's sawtooth reasoning loop as a LangGraph graph, for any LangChain chat model.

    Takes every argument of :class:`~freemem.policies.inftythink.InftyThinkerSteps` (model, segment and
    summary bounds, round cap, retries, counter, ``max_tokens_param``), plus:

    Args:
        checkpointer: a LangGraph checkpointer; then pass ``{"configurable": {"thread_id": ...}}``.
    """

    def build_graph(self) -> Any:
        """The compiled LangGraph graph (built on first use)."""
        builder = StateGraph(ThinkState)
        builder.add_node("segment", steps_node("segment", self.segment_steps, self.handlers))
        builder.add_node("summarize", steps_node("summarize", self.summarize_steps, self.handlers,
                                                 fail_open=True))
        builder.add_node("conclude", steps_node("conclude", self.conclude_steps, self.handlers))
        builder.add_edge(START, "segment")
        targets = {"segment": "segment", "summarize": "summarize", "conclude": "conclude", "__end__": END}
        builder.add_conditional_edges("segment", self.route, targets)
        builder.add_conditional_edges("summarize", self.route, targets)
        builder.add_edge("conclude", END)
        return builder.compile(checkpointer=self.checkpointer, name="InftyThinker")

    def _config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        cfg = dict(config or {})
        cfg.setdefault("recursion_limit", self.recursion_limit())
        return cfg

    def invoke(self, question: str | None, config: Mapping[str, Any] | None = None) -> ThinkResult:
        """Reason about ``question`` until an answer or the round cap. ``None`` resumes the thread named in
        ``config`` from its last checkpoint (needs a checkpointer)."""
        state = self.graph.invoke(self.initial_state(question), self._config(config))
        return ThinkResult.from_state(state)

    async def ainvoke(self, question: str | None, config: Mapping[str, Any] | None = None) -> ThinkResult:
        """Async twin of :meth:`invoke`."""
        state = await self.graph.ainvoke(self.initial_state(question), self._config(config))
        return ThinkResult.from_state(state)
