"""The served graph module (``integrations/langgraph-server/agent.py``) and its checkpointer, without the server:
configuration errors are clear, the workspace tools never read outside their root."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from freemem import ConfigError  # noqa: E402
from tests.server.scripted_model import FINAL_ANSWER, ServedScriptedModel, make_model  # noqa: E402

INTEGRATION = ROOT / "integrations" / "langgraph-server"
FACTORY = "tests.server.scripted_model:make_model"


def _load(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for key in ("FREEMEM_AGENT_MODEL", "FREEMEM_AGENT_MODEL_FACTORY", "FREEMEM_BUDGET", "FREEMEM_AGENT_ROOT",
                "FREEMEM_TTL", "FREEMEM_KEEP_LAST"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"served_{name}_under_test", INTEGRATION / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _load("agent", monkeypatch, FREEMEM_AGENT_MODEL_FACTORY=FACTORY, FREEMEM_AGENT_ROOT=str(ROOT))


def test_graph_is_a_create_agent_graph_with_the_middleware(agent: ModuleType) -> None:
    nodes = set(agent.graph.get_graph().nodes)
    assert {"model", "tools", "FreeMemoryMiddleware.before_model"} <= nodes
    assert agent.graph.checkpointer is None, "the server supplies the checkpointer"


@pytest.mark.parametrize(("env", "message"), [
    ({}, "set FREEMEM_AGENT_MODEL"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": "no_colon_here"}, "must be 'package.module:callable'"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": "tests.server.nope:make"}, "cannot be loaded"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": "tests.server.scripted_model:missing"}, "cannot be loaded"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": "os:getcwd"}, "not a LangChain chat model"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": FACTORY, "FREEMEM_BUDGET": "lots"}, "FREEMEM_BUDGET must be a whole number"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": FACTORY, "FREEMEM_BUDGET": "-5"}, "FREEMEM_BUDGET must be positive"),
    ({"FREEMEM_AGENT_MODEL_FACTORY": FACTORY, "FREEMEM_AGENT_ROOT": "/nonexistent/freemem"}, "must be a folder"),
])
def test_bad_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _load("agent", monkeypatch, **env)


def test_tools_stay_inside_their_root(agent: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "inside.txt").write_text("alpha\nbeta\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("secret\n")
    (tmp_path / "link.txt").symlink_to(outside)
    tools = {t.name: t for t in agent.workspace_tools(tmp_path)}
    try:
        assert "2  beta" in tools["read_file"].invoke({"path": "inside.txt"})
        for path in ("../" + outside.name, str(outside), "link.txt"):
            assert "outside the workspace" in tools["read_file"].invoke({"path": path})
        assert "outside the workspace" in tools["list_files"].invoke({"path": ".."})
        assert "outside the workspace" in tools["search"].invoke({"pattern": "secret", "path": ".."})
        assert "does not exist" in tools["read_file"].invoke({"path": "nope.txt"})
        assert "bad regular expression" in tools["search"].invoke({"pattern": "("})
        assert tools["search"].invoke({"pattern": "bet"}) == "inside.txt:2: beta"
    finally:
        outside.unlink()


def test_tool_output_is_cut_and_says_so(agent: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 80 + "\n" + "\n".join("y" * 100 for _ in range(2000)))
    out = agent.workspace_tools(tmp_path)[1].invoke({"path": "big.txt", "max_lines": 5000})
    assert len(out) < agent.MAX_TOOL_CHARS + 100 and "more characters]" in out


def test_scripted_model_plays_the_step_the_conversation_is_at() -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    model = make_model()
    assert isinstance(model, ServedScriptedModel) and model.bind_tools([]) is model
    first = model.invoke([HumanMessage("q")])
    call = first.tool_calls[0]
    second = model.invoke([HumanMessage("q"), first, ToolMessage("out", tool_call_id=call["id"])])
    assert second.tool_calls[0]["id"] != call["id"] and second.tool_calls[0]["id"].endswith("_1")
    again = model.invoke([HumanMessage("q")])
    assert again.tool_calls[0]["id"] == call["id"], "stateless: the same conversation gets the same step"
    last_id = call["id"].rsplit("_", 1)[0] + f"_{len(model.responses) - 2}"
    assert model.invoke([ToolMessage("out", tool_call_id=last_id)]).content == FINAL_ANSWER


@pytest.mark.parametrize(("env", "message"), [
    ({"FREEMEM_TTL": "soon"}, "FREEMEM_TTL must be a float"),
    ({"FREEMEM_KEEP_LAST": "0"}, "FREEMEM_KEEP_LAST must be positive"),
])
async def test_checkpointer_configuration_errors(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                 message: str) -> None:
    module = _load("checkpointer", monkeypatch, **env)
    with pytest.raises(ConfigError, match=message):
        async with module.redis_checkpointer():
            pass


async def test_checkpointer_yields_an_async_redis_saver(monkeypatch: pytest.MonkeyPatch) -> None:
    from freemem.redis import AsyncRedisSaver

    module = _load("checkpointer", monkeypatch, FREEMEM_TTL="60", FREEMEM_KEEP_LAST="3",
                   FREEMEM_REDIS_URL="redis://127.0.0.1:1/0", FREEMEM_KEY_PREFIX="t")
    async with module.redis_checkpointer() as saver:  # connects lazily: no server needed to build it
        assert isinstance(saver, AsyncRedisSaver)
        assert saver.policy.keep_last == 3 and saver.policy.ttl == 60 and saver.key_prefix == "t"
