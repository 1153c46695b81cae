"""GatedReader: the GRU-Mem gated reader (:mod:`freemem.policies.gated`) as a LangGraph graph and a tool.

Graph: ``read`` once per chunk (each step persisted by the checkpointer), then ``answer``;
:meth:`GatedReader.as_tool` makes it a LangChain tool an agent can call on a long document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph

from freemem.core.errors import ConfigError
from freemem.langgraph.steps import PolicyGraph, steps_node
from freemem.policies.gated import GatedReaderSteps, ReaderState, ReadResult

__all__ = ["GatedReader"]


class GatedReader(PolicyGraph, GatedReaderSteps):
    """GRU-Mem's gated memory reader as a LangGraph graph, for any LangChain chat model.

    Takes every argument of :class:`~freemem.policies.gated.GatedReaderSteps` (models, chunk and memory
    bounds, the gates, retries, counter, ``max_tokens_param``, ``think_tokens``), plus:

    Args:
        checkpointer: a LangGraph checkpointer; then pass ``{"configurable": {"thread_id": ...}}``.
    """

    def build_graph(self) -> Any:
        """The compiled LangGraph graph: ``read`` once per chunk (state persisted per step), then ``answer``."""
        builder = StateGraph(ReaderState)
        builder.add_node("read", steps_node("read", self.read_steps, self.handlers))
        builder.add_node("answer", steps_node("answer", self.answer_steps, self.handlers))
        builder.add_conditional_edges(START, self.route, {"read": "read", "answer": "answer"})
        builder.add_conditional_edges("read", self.route, {"read": "read", "answer": "answer"})
        builder.add_edge("answer", END)
        return builder.compile(checkpointer=self.checkpointer, name="GatedReader")

    def invoke(self, question: str | None, document: str | None = None,
               config: Mapping[str, Any] | None = None) -> ReadResult:
        """Read ``document`` to answer ``question``. ``invoke(None, None, config)`` resumes the thread named in
        ``config`` from its last checkpoint (needs a checkpointer)."""
        inputs = self.initial_state(question, document)
        state = self.graph.invoke(inputs, _config(self, config, inputs))
        return ReadResult.from_state(state)

    async def ainvoke(self, question: str | None, document: str | None = None,
                      config: Mapping[str, Any] | None = None) -> ReadResult:
        """Async twin of :meth:`invoke`."""
        inputs = self.initial_state(question, document)
        state = await self.graph.ainvoke(inputs, _config(self, config, inputs))
        return ReadResult.from_state(state)

    # -- as a tool --------------------------------------------------------------------------------------
    def as_tool(self, *, name: str = "read_long_document",
                description: str | None = None,
                documents: Mapping[str, str] | Callable[[str], str] | None = None) -> Any:
        """This reader as a LangChain tool (sync and async).

        Without ``documents`` the tool takes ``question`` and ``document`` (the text). With ``documents`` — a
        mapping or a function from a name to the text — it takes ``question`` and ``source`` (the name), so an
        agent never has to paste a long document into a tool call. The tool returns the answer, the memory
        the answer came from, and where reading stopped.
        """
        from langchain_core.tools import StructuredTool
        from pydantic import BaseModel, Field

        def lookup(source: str) -> str:
            if documents is None:
                raise ConfigError("this tool has no document store")
            if callable(documents):
                return documents(source)
            if source not in documents:
                raise ConfigError(f"unknown source {source!r}; known: {', '.join(sorted(documents))}")
            return documents[source]

        def render(result: ReadResult) -> str:
            where = (f"stopped after chunk {result.exit_position + 1} of {result.chunks_total}"
                     if result.exit_position is not None else f"read {result.chunks_read} chunks")
            return f"Answer: {result.answer}\nMemory: {result.memory}\n({where})"

        if documents is None:
            class TextArgs(BaseModel):
                question: str = Field(description="what to find out from the document")
                document: str = Field(description="the full text of the long document")

            def run_text(question: str, document: str) -> str:
                return render(self.invoke(question, document))

            async def arun_text(question: str, document: str) -> str:
                return render(await self.ainvoke(question, document))

            return StructuredTool.from_function(
                func=run_text, coroutine=arun_text, name=name, args_schema=TextArgs,
                description=description or "Read a long document chunk by chunk with a bounded memory and "
                                           "answer a question about it.")

        class SourceArgs(BaseModel):
            question: str = Field(description="what to find out from the document")
            source: str = Field(description="the name of the document to read")

        def run_source(question: str, source: str) -> str:
            return render(self.invoke(question, lookup(source)))

        async def arun_source(question: str, source: str) -> str:
            return render(await self.ainvoke(question, lookup(source)))

        known = f" Known documents: {', '.join(sorted(documents))}." if isinstance(documents, Mapping) else ""
        return StructuredTool.from_function(
            func=run_source, coroutine=arun_source, name=name, args_schema=SourceArgs,
            description=(description or "Read a long document chunk by chunk with a bounded memory and answer a "
                                        "question about it.") + known)


def _config(reader: GatedReaderSteps, config: Mapping[str, Any] | None,
            inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = dict(config or {})
    cfg.setdefault("recursion_limit", reader.recursion_limit(inputs))
    return cfg
