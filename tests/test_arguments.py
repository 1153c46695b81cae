"""Long string values of stale tool-call arguments are editable; the arguments stay valid JSON, keys and
short values stay byte-identical, and restoring gives back the exact original."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from freemem import AnchorMaker, Context, FreeMemory, Protection, apply_commands, pairing_violations, restore_messages
from freemem.core.json_args import arg_strings

BODY = "\n".join(f"line {i}: print('héllo {i}')  # \"quoted\" \\ back" for i in range(60))


def _session(arguments: str) -> list[dict]:
    return [{"role": "user", "content": "fix the script"},
            {"role": "assistant", "content": "writing it", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "str_replace_editor", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "File created."},
            {"role": "assistant", "content": "running it", "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "python r.py"}'}}]},
            {"role": "tool", "tool_call_id": "c2", "content": "ok"}]


@pytest.mark.parametrize("dumps", [
    lambda o: json.dumps(o),                                   # ASCII escapes
    lambda o: json.dumps(o, ensure_ascii=False),               # raw UTF-8
    lambda o: json.dumps(o, indent=2),                         # pretty
    lambda o: json.dumps(o, separators=(",", ":")),            # compact
])
def test_dict_arguments_edit_and_restore_exactly(dumps) -> None:
    raw = dumps({"command": "create", "path": "/w/r.py", "file_text": BODY, "n": [1, 2, {"x": "y"}]})
    msgs = _session(raw)
    ctx = Context.from_messages(msgs)
    editable = [r for r in ctx.regions if r.kind == "arguments" and r.editable]
    assert {r.field for r in editable} == {"tool_calls[0].file_text"}  # the latest call stays whole
    r = editable[0]
    out = apply_commands(ctx, [AnchorMaker(ctx).command(r.start + 40, r.end - 40)], max_freed_share=1.0)
    assert not out.rejected
    new_raw = out.messages[1]["tool_calls"][0]["function"]["arguments"]
    parsed = json.loads(new_raw)
    assert parsed["path"] == "/w/r.py" and parsed["n"] == [1, 2, {"x": "y"}] and "[freemem:" in parsed["file_text"]
    assert new_raw.startswith(raw[:raw.index('"file_text"')])  # untouched JSON before the value, byte for byte
    assert pairing_violations(out.messages) == []
    assert restore_messages(out.messages, out.applied) == msgs


def test_protected_and_opt_out() -> None:
    raw = json.dumps({"file_text": BODY})
    msgs = _session(raw)
    assert not any(r.editable for r in Context.from_messages(msgs, protection=Protection(tool_arguments=True)).regions
                   if r.kind == "arguments")
    # the most recent turn's calls stay whole
    recent = msgs[:3] + [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "x", "arguments": raw}}]}, msgs[4]]
    ctx = Context.from_messages(recent)
    assert [r.field for r in ctx.regions if r.kind == "arguments" and r.editable] == ["tool_calls[0].file_text"]
    # malformed or non-object arguments are never editable
    assert arg_strings('{"a": "' + "x" * 300) == [] and arg_strings(json.dumps(["x" * 300])) == []


def test_langchain_messages_and_the_raw_provider_form() -> None:
    raw_args = json.dumps({"path": "/w/r.py", "file_text": BODY})
    msgs = [HumanMessage("fix", id="h"),
            AIMessage("editing", id="a", tool_calls=[{"id": "c1", "name": "edit", "args": json.loads(raw_args)}],
                      additional_kwargs={"tool_calls": [{"id": "c1", "type": "function",
                                                         "function": {"name": "edit", "arguments": raw_args}}]}),
            ToolMessage("done", tool_call_id="c1", id="t"),
            AIMessage("run", id="a2", tool_calls=[{"id": "c2", "name": "bash", "args": {"cmd": "ls"}}]),
            ToolMessage("ok", tool_call_id="c2", id="t2")]
    memory = FreeMemory(counter="approx", budget=200)
    result = memory.clean(msgs)
    edited = result.messages[1]
    assert "[freemem:" in edited.tool_calls[0]["args"]["file_text"]
    assert edited.tool_calls[0]["args"]["path"] == "/w/r.py"
    raw_after = json.loads(edited.additional_kwargs["tool_calls"][0]["function"]["arguments"])
    assert raw_after == edited.tool_calls[0]["args"]
    assert memory.count_messages(result.messages) < memory.count_messages(msgs)
    restored = restore_messages(result.messages, [s for r in result.event.rounds for s in r])
    assert restored[1].tool_calls == msgs[1].tool_calls
    assert restored[1].additional_kwargs == msgs[1].additional_kwargs
