"""Signed blocks through ``AsyncRedisSaver`` and ``AsyncRedisArchive``: a real ``create_agent`` tool loop whose
scripted model answers with provider-signed blocks, persisted in a real redis-server. The checkpointed thread
holds every kept block byte-identical (0 edited), a fresh saver reads the same, and the archive rebuilds the
original content lists exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from freemem import FreeMemory
from freemem.langgraph import FreeMemoryMiddleware
from freemem.redis import AsyncRedisArchive, AsyncRedisSaver
from tests.support import provider_blocks as pb
from tests.support.redis_servers import RedisServerProcess
from tests.support.signed_agents import TOOLS, check_requests, script, scripted


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 1000}


@pytest.mark.parametrize("provider", ["anthropic", "openai", "gemini"])
async def test_signed_blocks_round_trip_through_async_redis(redis_server: RedisServerProcess, prefix: str,
                                                            provider: pb.Provider) -> None:
    steps = 20
    thread = f"signed-{provider}"
    ask = {"messages": [HumanMessage("Why does svc3 drop connections?", id="task")]}
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            AsyncRedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        memory = FreeMemory(counter="approx", budget=8_000, archive=archive)
        model = scripted(provider, steps)
        agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=saver)
        await agent.ainvoke(ask, _config(thread))
        answers = script(provider, steps)
        assert check_requests(provider, model.received, answers) > steps
        pruned = (await agent.aget_state(_config(thread))).values["messages"]
        assert await archive.alist_events(thread), "the loop never cleaned"

    # a fresh saver on the same server reads the thread back: every kept block as the model wrote it
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            AsyncRedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        agent = create_agent(scripted(provider, 0), TOOLS, checkpointer=saver)
        stored = (await agent.aget_state(_config(thread))).values["messages"]
        assert [m.id for m in stored] == [m.id for m in pruned]
        by_id = {a.id: a for a in answers}
        held = pb.kept_blocks(stored)
        assert held == pb.kept_blocks([by_id[m.id] for m in stored if m.id in by_id])
        assert pb.signed_count(stored) > 0
        assert json.dumps([m.model_dump() for m in stored], sort_keys=True, default=str) == json.dumps(
            [m.model_dump() for m in pruned], sort_keys=True, default=str)

        # the archive rebuilds the original thread: content lists equal to an agent's without freemem
        original = await archive.aoriginal(thread, stored)
        baseline = create_agent(scripted(provider, steps), TOOLS).invoke(ask, _config("baseline"))["messages"]
        assert [m.content for m in original] == [m.content for m in baseline]
        assert [m.additional_kwargs for m in original] == [m.additional_kwargs for m in baseline]
        assert pb.kept_blocks(original) == pb.kept_blocks([by_id.get(m.id, m) for m in original])
