"""FreeMemory: triggers, ledger events, failure handling, sync/async twins, restore from events."""

from __future__ import annotations

import pytest

from freemem import (
    Cleaner,
    CleanerError,
    Command,
    ConfigError,
    EveryNTokens,
    FreeMemory,
    LoopDetected,
    OverBudget,
    Proposal,
    restore_rounds,
)
from freemem.config import Triggers
from freemem.core.archive import restore_event
from freemem.core.ledger import CleanEvent


def session(n: int = 8):
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "read", "arguments": f'{{"i": {i}}}'}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}",
                     "content": "".join(f"row {i}-{j} value {j * i}\n" for j in range(150))})
    return msgs


class Boom(Cleaner):
    name = "boom"

    def propose(self, context):
        raise CleanerError("server down")


class Garbage(Cleaner):
    name = "garbage"

    def propose(self, context):
        return Proposal(commands=[Command(prefix="not in the text", suffix="x")], cleaner=self.name,
                        usage={"prompt_tokens": 10})


def test_clean_meets_budget_and_restores():
    msgs = session()
    mem = FreeMemory(budget=1500, counter="approx")
    result = mem.clean(msgs, trigger="test")
    ev = result.event
    assert result.changed and ev.tokens_before > 1500 >= ev.tokens_after
    assert ev.to_dict()["tokens_freed"] == ev.tokens_before - ev.tokens_after
    assert "rounds" not in ev.to_dict() and ev.to_dict(spans=True)["rounds"]
    # a triggered round may fold as well as delete (cost-aware scheduling): the event undoes both
    assert restore_event(result.messages, ev.to_dict(spans=True)) == msgs
    # events survive a JSON round trip (the archive stores them)
    again = CleanEvent.from_dict(ev.to_dict(spans=True))
    assert restore_event(result.messages, again.to_dict(spans=True)) == msgs


def test_failing_cleaner_skips_the_round_with_a_warning():
    mem = FreeMemory(Boom(), counter="approx")
    with pytest.warns(RuntimeWarning, match="server down"):
        result = mem.clean(session(2))
    assert not result.changed and result.messages == session(2)
    assert result.event.error and mem.stats.errors == 1


async def test_async_twin_and_failures():
    mem = FreeMemory(budget=1500, counter="approx")
    result = await mem.aclean(session())
    assert result.event.tokens_after <= 1500
    with pytest.warns(RuntimeWarning):
        failed = await FreeMemory(Boom(), counter="approx").aclean(session(2))
    assert failed.event.error


def test_garbage_commands_are_rejected_not_raised():
    result = FreeMemory(Garbage(), counter="approx").clean(session(2))
    assert not result.changed and result.event.rejected[0]["reason"] == "prefix_not_found"
    assert result.event.usage == {"prompt_tokens": 10}


def test_triggers():
    mem = FreeMemory(counter="approx", budget=1000, triggers=Triggers(every_tokens=500))
    assert mem.check(400, 0) is None
    assert "new tokens" in mem.check(600, 0)
    assert "budget" in mem.check(1200, 1000)
    loop = "Hmm, let me check again whether it divides.\n\n" * 10
    assert "loop" in mem.check(10, 0, loop)
    assert EveryNTokens(5000).check.__self__.n == 5000
    with pytest.raises(ConfigError):
        OverBudget(0)
    assert LoopDetected().min_repeats == 3
    assert mem.maybe_clean(session(1)[:2]) is None


def test_counting_is_cached_per_text():
    mem = FreeMemory(counter="approx")
    msgs = session(20)
    mem.count_messages(msgs)
    misses = mem.counter.misses
    mem.count_messages(msgs + [{"role": "user", "content": "one more"}])
    assert mem.counter.misses == misses + 1


def test_text_cleaning():
    text = "Q?\n" + "".join(f"distinct line {i}\n" for i in range(50)) + "Wait, recheck the sum.\n\n" * 600
    result = FreeMemory(counter="approx").clean_text(text, question="Q?")
    assert result.changed and len(result.text) < len(text) / 2
    assert restore_rounds(result.text, result.event.rounds) == text


def test_bad_config():
    with pytest.raises(ConfigError):
        FreeMemory(budget=-1)
    with pytest.raises(ConfigError):
        FreeMemory(counter="nope")
