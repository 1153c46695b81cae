"""Cost-aware scheduling under a prompt cache (FreeMemory(cache=...)) and the cache model it uses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from freemem import Command, FreeMemory
from freemem.config import CachePolicy, Triggers
from freemem.core.archive import restore_event
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.errors import ConfigError
from freemem.core.ledger import CleanEvent
from freemem.core.prompt_cache import PRICE_MODELS, CacheMeter, PriceModel, get_price_model, message_key, message_keys
from freemem.langgraph import LAST_CALL_KEY, CleanStep


def _rows(tag: str, n: int) -> str:
    return "\n".join(f"{tag} row {i}: value={i * 7919 % 1000} status=ok" for i in range(n))


def _call(i: int, name: str = "read") -> dict[str, Any]:
    return {"role": "assistant", "content": f"step {i}", "id": f"a{i}",
            "tool_calls": [{"id": f"c{i}", "type": "function",
                            "function": {"name": name, "arguments": json.dumps({"i": i})}}]}


def _result(i: int, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"c{i}", "content": text, "id": f"t{i}"}


def session() -> list[dict[str, Any]]:
    """An early bulky result (EARLY), big results nobody edits, a late bulky result (LATE), a recent turn."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "sys", "id": "s"},
                                  {"role": "user", "content": "task", "id": "u"}]
    msgs += [_call(0), _result(0, "EARLY START\n" + _rows("early", 80) + "\nEARLY END")]
    for i in range(1, 6):
        msgs += [_call(i), _result(i, _rows(f"mid{i}", 80))]
    msgs += [_call(6), _result(6, "LATE START\n" + _rows("late", 80) + "\nLATE END")]
    msgs += [_call(7), _result(7, "short")]
    return msgs


class Both(Cleaner):
    """Proposes the two equal edits: the early result and the late one, each whole."""

    name = "both"

    def propose(self, context: Any) -> Proposal:
        return Proposal(commands=[Command(prefix="EARLY START", suffix="EARLY END"),
                                  Command(prefix="LATE START", suffix="LATE END")], cleaner=self.name)


class Early(Cleaner):
    """Proposes only the early edit: it frees as much as the late one but rewrites almost the whole prompt."""

    name = "early"

    def propose(self, context: Any) -> Proposal:
        return Proposal(commands=[Command(prefix="EARLY START", suffix="EARLY END")], cleaner=self.name)


def _index(msgs: list[Any], mid: str) -> int:
    return next(k for k, m in enumerate(msgs) if m.get("id") == mid)


def test_of_equal_gains_the_edit_set_whose_first_change_is_latest_wins() -> None:
    msgs = session()
    probe = FreeMemory(Both(), counter="approx", fold=False, cache=None)
    early, late = _index(msgs, "t0"), _index(msgs, "t6")
    sizes = probe.message_tokens(msgs)
    assert abs(sizes[early] - sizes[late]) <= 2  # the two edits free the same
    total = sum(sizes)
    budget = total - sizes[late] // 2  # freeing either one is enough

    memory = FreeMemory(Both(), counter="approx", budget=budget, fold=False, triggers=Triggers(every_tokens=None))
    result = memory.clean(msgs, trigger=memory.check(total, 0))
    assert result.event.tokens_after <= budget
    out = result.messages
    assert out[early] == msgs[early], "the early edit rewrites the whole cached prefix after it"
    assert out[late] != msgs[late] and "LATE START" not in out[late]["content"]
    cache = result.event.cache
    assert cache["decision"] == "applied" and cache["first_change"] == late and cache["partial"]
    assert cache["prefix_tokens"] == sum(sizes[:late])
    assert result.event.applied == 1 and len(result.event.rounds) == 1
    # what was kept restores exactly, and the ledger says what it cost
    assert restore_event(out, result.event.to_dict(spans=True)) == msgs
    assert result.event.to_dict()["cache"]["cost"] == cache["cost"]
    assert CleanEvent.from_dict(result.event.to_dict(spans=True)).cache == cache

    # Cost-blind (cache=None) the same round applies both, as before.
    blind = FreeMemory(Both(), counter="approx", budget=budget, fold=False, cache=None,
                       triggers=Triggers(every_tokens=None))
    both = blind.clean(msgs, trigger="over budget")
    assert both.messages[early] != msgs[early] and both.messages[late] != msgs[late]
    assert not both.event.cache


def test_an_under_budget_round_that_does_not_pay_for_its_cache_write_is_deferred() -> None:
    msgs = session()
    memory = FreeMemory(Early(), counter="approx", budget=100_000, fold=False, triggers=Triggers(every_tokens=1000))
    tokens = memory.count_messages(msgs)
    reason = memory.check(tokens, 0)
    assert reason and "new tokens" in reason
    result = memory.clean(msgs, trigger=reason, tokens=tokens)
    assert not result.changed and result.messages == msgs
    assert result.event.cache["decision"] == "deferred" and result.event.cache["deferred_cost"] > 0
    assert "deferred" in (result.event.note or "")
    # Asked for by hand, the same round applies it.
    assert memory.clean(msgs).event.applied == 1
    # A late edit that frees as much rewrites little: it pays at once.
    late = FreeMemory(Both(), counter="approx", budget=100_000, fold=False, triggers=Triggers(every_tokens=1000))
    applied = late.clean(msgs, trigger=reason, tokens=tokens)
    assert applied.event.cache["decision"] == "applied" and applied.event.cache["first_change"] == _index(msgs, "t6")
    assert applied.messages[_index(msgs, "t0")] == msgs[_index(msgs, "t0")]


def test_an_idle_gap_past_the_ttl_is_a_free_round() -> None:
    msgs = session()
    now = [10_000.0]
    memory = FreeMemory(Early(), counter="approx", budget=100_000, fold=False,
                        cache=CachePolicy(PriceModel("t", read=0.1, write=1.25, ttl_s=300), clock=lambda: now[0]),
                        triggers=Triggers(every_tokens=None))
    tokens = memory.count_messages(msgs)
    assert memory.check(tokens, 0, idle_s=120) is None  # warm: no trigger fires
    assert memory.check(tokens, tokens, idle_s=400) is None  # cold, but nothing new since the last clean
    reason = memory.check(tokens, 0, idle_s=400)
    assert reason is not None and reason.startswith("cache cold")
    warm = memory.clean(msgs, trigger="every N", tokens=tokens, idle_s=120)
    assert warm.event.cache["decision"] == "deferred" and not warm.changed
    cold = memory.clean(msgs, trigger=reason, tokens=tokens, idle_s=400)
    assert cold.event.cache["decision"] == "applied" and cold.event.cache["cold"]
    assert cold.event.applied == 1 and cold.event.cache["cost"] < 0  # the whole prompt is written anyway

    # Through the LangGraph step: the idle gap comes from the state's last-call time and the memory's clock.
    lc = [HumanMessage("task", id="u")]
    for i in range(3):
        lc += [AIMessage("", id=f"a{i}", tool_calls=[{"name": "read", "args": {"i": i}, "id": f"c{i}"}]),
               ToolMessage(("EARLY START\n" if i == 0 else "") + _rows(f"r{i}", 40) + ("\nEARLY END" if i == 0 else ""),
                           tool_call_id=f"c{i}", id=f"t{i}")]
    lc += [AIMessage("", id="a9", tool_calls=[{"name": "read", "args": {"i": 9}, "id": "c9"}]),
           ToolMessage("LATE START x LATE END", tool_call_id="c9", id="t9")]
    step = CleanStep(memory)
    state = {"messages": lc, LAST_CALL_KEY: now[0] - 60, "freemem_tokens_at_last_clean": 0}
    assert step.run(state) == {LAST_CALL_KEY: now[0]}  # 60 s idle: warm, nothing to do
    state[LAST_CALL_KEY] = now[0] - 301
    update = step.run(state)
    assert update is not None and update[LAST_CALL_KEY] == now[0]
    event = update["freemem_ledger"][0]
    assert event["trigger"].startswith("cache cold") and event["cache"]["cold"] and event["applied"] >= 1
    # state_fields=False: the step keeps the time per thread in process
    local = CleanStep(memory, state_fields=False)
    assert local.run({"messages": lc}, thread="t") is None
    now[0] += 1000
    assert local.run({"messages": lc}, thread="t") is not None


def test_over_budget_the_budget_stays_a_hard_bound() -> None:
    msgs = session()
    memory = FreeMemory(counter="approx", budget=2500)
    tokens = memory.count_messages(msgs)
    result = memory.clean(msgs, trigger=memory.check(tokens, 0), tokens=tokens)
    assert result.event.tokens_after <= 2500 and result.event.cache["forced"]
    assert result.event.cache["decision"] == "applied"
    assert restore_event(result.messages, result.event.to_dict(spans=True)) == msgs


# ---------------------------------------------------------------------------------------------- the model


def test_price_models_by_name_table_and_file(tmp_path: Any) -> None:
    assert get_price_model("anthropic") == PriceModel("anthropic", read=0.1, write=1.25, ttl_s=300)
    assert {"anthropic", "openai", "openai-0.1"} <= set(PRICE_MODELS)
    custom = get_price_model("read=0.2,write=1.5,ttl=none,name=mine")
    assert custom == PriceModel("mine", read=0.2, write=1.5, ttl_s=None)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"read": 0.25, "write": 1.0, "ttl": 600}))
    assert get_price_model(str(path)) == PriceModel("prices", read=0.25, write=1.0, ttl_s=600)
    for bad, match in [("nope", "unknown price model"), ("read=0.1", "needs read and write"),
                       ("read=x,write=1", "not a number"), ("read=1,write=0.5", "cannot cost less"),
                       ("read=0.1,write=1,color=3", "unknown key")]:
        with pytest.raises(ConfigError, match=match):
            get_price_model(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        get_price_model(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="low_water"):
        FreeMemory(cache=CachePolicy(low_water=0))


def test_the_meter_caches_the_leading_messages_identical_to_the_previous_request() -> None:
    a = {"role": "user", "content": "hello", "id": "1"}
    b = {"role": "assistant", "content": "hi", "id": "2"}
    c = {"role": "user", "content": "more", "id": "3"}
    assert message_key(a) == message_key({**a, "id": "other"})  # ids are not sent
    assert message_key(HumanMessage("hello", id="x")) == message_key(a)
    meter = CacheMeter("anthropic")
    first = meter.request(message_keys([a, b]), [100, 50], at=0.0)
    assert (first.cached, first.recomputed, first.first_change) == (0, 150, 0)
    assert first.cost == pytest.approx(1.25 * 150)
    second = meter.request(message_keys([a, b, c]), [100, 50, 30], at=10.0)
    assert (second.cached, second.recomputed) == (150, 30)
    assert second.cost == pytest.approx(0.1 * 150 + 1.25 * 30)
    edited = meter.request(message_keys([a, {**b, "content": "[freemem: 9 tokens freed]"}, c]), [100, 5, 30],
                           at=20.0)
    assert (edited.cached, edited.first_change, edited.recomputed) == (100, 1, 35)
    cold = meter.request(message_keys([a, {**b, "content": "[freemem: 9 tokens freed]"}, c]), [100, 5, 30],
                         at=20.0 + 301)
    assert cold.cold and cold.cached == 0
    with pytest.raises(ValueError):
        meter.request(message_keys([a]), [1, 2])
