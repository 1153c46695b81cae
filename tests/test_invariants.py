"""Property tests of the core invariants (DESIGN.md §3), whatever the commands:

* protected text is byte-identical afterwards (no applied span overlaps protected text, and the pruned
  messages render to exactly the pruned text, headers included);
* tool-call / tool-result pairing stays valid; roles, ids and tool-call ids never change;
* the original is rebuilt exactly from the pruned result plus the applied spans.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from freemem import (
    AnchorMaker,
    Command,
    Context,
    HeuristicCleaner,
    Protection,
    apply_commands,
    pairing_violations,
    restore_messages,
    restore_text,
)

WORDS = ["alpha", "beta", "gamma", "delta", "x = 1", "error", "\n", "\n\n", "  ", "def f():", "\\boxed{7}",
         "Traceback", "path/to/file.py", "Final answer: 7", "ok", "{", "}", "same line\n"]

text_st = st.lists(st.sampled_from(WORDS), min_size=0, max_size=30).map(" ".join)


@st.composite
def transcripts(draw):
    msgs = [{"role": "system", "content": draw(text_st) or "sys"}, {"role": "user", "content": draw(text_st)}]
    call = 0
    for turn in range(draw(st.integers(1, 6))):
        ncalls = draw(st.integers(0, 2))
        msg = {"role": "assistant", "content": draw(text_st)}
        if draw(st.booleans()):
            msg["id"] = f"m{turn}"
        if draw(st.booleans()):
            msg["reasoning_content"] = draw(text_st)
        if ncalls:
            msg["tool_calls"] = []
            for _ in range(ncalls):
                call += 1
                msg["tool_calls"].append({"id": f"call_{call}", "type": "function", "function": {
                    "name": draw(st.sampled_from(["ls", "read", "grep"])),
                    "arguments": json.dumps({"q": draw(st.sampled_from(WORDS)),
                                             # a long string value: editable in calls outside the recent turn
                                             **({"body": draw(text_st) * 3} if draw(st.booleans()) else {})},
                                            ensure_ascii=draw(st.booleans()))}})
        if draw(st.booleans()):
            msg["content"] = [{"type": "text", "text": draw(text_st)}, {"type": "image_url", "image_url": {"url": "x"}}]
        msgs.append(msg)
        for c in msg.get("tool_calls", []):
            msgs.append({"role": "tool", "tool_call_id": c["id"], "content": draw(text_st)})
        if draw(st.integers(0, 3)) == 0:
            msgs.append({"role": "user", "content": draw(text_st), **({"pinned": True} if draw(st.booleans()) else {})})
    return msgs


@st.composite
def commands_for(draw, text: str):
    cmds = []
    for _ in range(draw(st.integers(0, 8))):
        if not text:
            break
        s = draw(st.integers(0, len(text) - 1))
        e = draw(st.integers(s, min(len(text), s + 400)))
        a = draw(st.integers(1, 40))
        b = draw(st.integers(0, 40))
        cmds.append(Command(prefix=text[s:s + a], suffix=text[max(s, e - b):e]))
    return cmds


def protections():
    return st.builds(Protection, recent_turn=st.booleans(), first_human=st.booleans(), last_human=st.booleans(),
                     answer_lines=st.booleans())


def check_invariants(ctx: Context, msgs, out) -> None:
    # no applied span overlaps protected text
    for span in out.applied:
        for r in ctx.regions_in(span.start, span.end):
            assert r.editable, (span, r)
    pruned = out.messages
    # the pruned messages render to exactly the pruned text: headers and protected text byte-identical
    assert Context.from_messages(pruned, protection=ctx.protection).text == out.text
    assert pairing_violations(pruned) == pairing_violations(msgs) == []
    for old, new in zip(msgs, pruned, strict=True):
        assert old["role"] == new["role"] and old.get("id") == new.get("id")
        assert old.get("tool_call_id") == new.get("tool_call_id")
        assert [c["id"] for c in old.get("tool_calls", [])] == [c["id"] for c in new.get("tool_calls", [])]
    assert restore_messages(pruned, out.applied) == msgs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(transcripts(), protections(), st.data())
def test_random_commands_keep_invariants(msgs, protection, data):
    ctx = Context.from_messages(msgs, protection=protection)
    cmds = data.draw(commands_for(ctx.text))
    out = apply_commands(ctx, cmds, max_freed_share=data.draw(st.sampled_from([0.3, 0.9, 1.0])))
    assert len(out.rejected) + len({i for s in out.applied for i in s.command_indexes}) == len(cmds)
    check_invariants(ctx, msgs, out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(transcripts(), st.data())
def test_anchor_maker_commands_are_accepted_exactly(msgs, data):
    ctx = Context.from_messages(msgs, protection=Protection(recent_turn=False))
    editable = [r for r in ctx.regions if r.editable and r.end - r.start > 2]
    assume(editable)
    r = data.draw(st.sampled_from(editable))
    s = data.draw(st.integers(r.start, r.end - 1))
    e = data.draw(st.integers(s + 1, r.end))
    cmd = AnchorMaker(ctx).command(s, e)
    if cmd is not None:
        out = apply_commands(ctx, [cmd], max_freed_share=1.0)
        assert [(a.start, a.end) for a in out.applied] == [(s, e)]
        check_invariants(ctx, msgs, out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(transcripts(), st.integers(20, 400))
def test_heuristic_cleaner_keeps_invariants(msgs, budget):
    ctx = Context.from_messages(msgs)
    proposal = HeuristicCleaner(budget=budget, bulky_tokens=10, keep_recent_tools=0).propose(ctx)
    out = apply_commands(ctx, proposal.commands, max_freed_share=1.0)
    assert not [r for r in out.rejected if r.reason != "round_refused"], out.rejected
    check_invariants(ctx, msgs, out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=200).map(" ".join), st.data())
def test_plain_text_roundtrip(text, data):
    ctx = Context.from_text(text, protection=Protection(recent_chars=data.draw(st.integers(0, 50))))
    out = apply_commands(ctx, data.draw(commands_for(text)), max_freed_share=1.0)
    for span in out.applied:
        assert all(r.editable for r in ctx.regions_in(span.start, span.end))
    assert restore_text(out.text, out.applied) == text
