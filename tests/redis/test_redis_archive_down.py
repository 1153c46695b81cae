"""Issue 12, item 1: with the archive's Redis gone, a round's edit is not persisted (its removed text would be
stored nowhere): the agent's turn goes on with the unpruned messages, the ledger event carries the error, a
warning says what happened — and once Redis is back, rounds are persisted and archived again."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from freemem import FreeMemory
from freemem.langgraph import LEDGER_KEY, FreeMemoryMiddleware
from freemem.redis import RedisArchive
from tests.support.redis_servers import start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "langgraph"))
from lgfakes import TOOLS, scripted_model


def test_archive_down_persists_no_edit_and_says_so(tmp_path: Path) -> None:
    server = start_server(tmp_path / "r")
    try:
        archive = RedisArchive.from_url(server.url, key_prefix="down", socket_timeout=2)
        memory = FreeMemory(counter="approx", budget=6000, archive=archive)
        model = scripted_model([12, 12])
        agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
        config: dict[str, Any] = {"configurable": {"thread_id": "t"}, "recursion_limit": 200}
        server.kill()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agent.invoke({"messages": [HumanMessage("first turn")]}, config)
        state = agent.get_state(config).values
        # Nothing pruned was persisted: no marker, no fold in the thread; every event says why.
        assert not any("[freemem:" in str(m.content) for m in state["messages"])
        assert len(state["messages"]) == 1 + 12 * 2 + 1
        events = state[LEDGER_KEY]
        assert events and all("archive failed" in (e["error"] or "") for e in events)
        assert all(e["tokens_after"] == e["tokens_before"] for e in events)
        assert any("the edit was not persisted" in str(w.message) for w in caught)

        server.start()  # Redis is back: the next rounds are persisted and archived
        agent.invoke({"messages": [HumanMessage("second turn")]}, config)
        state = agent.get_state(config).values
        assert any("[freemem:" in str(m.content) for m in state["messages"]) or any(
            m.id.startswith("freemem-fold-") for m in state["messages"])
        assert archive.list_events("t")
        original = archive.original("t", state["messages"])
        assert not any("[freemem:" in str(m.content) for m in original)
    finally:
        server.stop()
