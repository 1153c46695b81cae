"""Real ``create_agent`` agents with ``FreeMemoryMiddleware`` and a scripted model writing threads into a real
checkpointer and archive, one tool of which returns hostile HTML: what the inspector's tests (tests/ui) look at.
A module of its own, not a conftest, so that importing it never depends on which ``conftest`` pytest loaded
first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_LANGGRAPH_TESTS = str(Path(__file__).resolve().parents[1] / "langgraph")
if _LANGGRAPH_TESTS not in sys.path:  # `lgfakes`, as tests/langgraph import it
    sys.path.insert(0, _LANGGRAPH_TESTS)

from langchain.agents import create_agent  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from lgfakes import BUDGET, TOOLS, ScriptedModel, tool_call_message  # noqa: E402

from freemem import FreeMemory  # noqa: E402
from freemem.config import FoldPolicy  # noqa: E402
from freemem.langgraph import FreeMemoryMiddleware  # noqa: E402

__all__ = ["UI_TOOLS", "XSS", "read_page", "run_agent", "script"]

#: What a hostile web page could put in a tool result: markup that runs script if a page ever renders it raw.
XSS = ('<script>window.__freemem_xss = 1; document.title = "pwned"</script>'
       '<img src=x onerror="window.__freemem_xss = 2"><b onmouseover="alert(1)">bold</b>')


@tool
def read_page(url: str) -> str:
    """Fetch a web page (returns untrusted HTML)."""
    body = "\n".join(f"<p>paragraph {i} of {url}: lorem ipsum dolor sit amet, consectetur adipiscing</p>"
                     for i in range(60))
    return f"<html><head><title>{url}</title></head><body>{XSS}\n{body}\n{XSS}</body></html>"


UI_TOOLS = [*TOOLS, read_page]


def script(calls: int) -> list[BaseMessage]:
    """``calls`` tool-calling steps (every 4th reads a hostile page), then an answer."""
    out: list[BaseMessage] = []
    for k in range(calls):
        if k % 4 == 3:
            out.append(AIMessage(content=f"Step {k}: reading the page.",
                                 tool_calls=[{"name": "read_page", "args": {"url": f"https://example.test/{k}"},
                                              "id": f"call_page_{k}", "type": "tool_call"}]))
        else:
            out.append(tool_call_message(0, k))
    out.append(AIMessage(content="Done: the retry loop in svc2 comes from client.fetch."))
    return out


def run_agent(saver: Any, archive: Any, thread: str, *, calls: int = 36) -> dict[str, Any]:
    """One turn of a real agent with freemem (deletions and a fold) persisted in ``saver`` / ``archive``."""
    memory = FreeMemory(counter="approx", budget=BUDGET, archive=archive, fold=FoldPolicy(keep_units=2, share=0.1))
    model = ScriptedModel(responses=script(calls))
    agent = create_agent(model, UI_TOOLS, middleware=[FreeMemoryMiddleware(memory, recall=archive is not None)],
                         checkpointer=saver)
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 10 * calls + 20}
    agent.invoke({"messages": [HumanMessage("why does svc2 keep retrying? read the logs and the pages")]}, config)
    return agent.get_state(config).values


