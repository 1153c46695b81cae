"""apply_commands semantics (DESIGN.md §3) on hand-made transcripts and texts."""

from freemem import Command, Context, Protection, apply_commands, pairing_violations, restore_messages, restore_text
from freemem.core.apply import DEFAULT_TEXT_MARKER


def transcript():
    big = "BEGIN LISTING\n" + "".join(f"file_{i:03d}.py\n" for i in range(40)) + "END LISTING\n"
    return [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Fix the failing test in pkg/core.py"},
        {"role": "assistant", "content": "Let me list the files.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": '{"path": "."}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": big},
        {"role": "assistant", "content": "I will now read core.py because it is mentioned.", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "read", "arguments": '{"path": "pkg/core.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "def f():\n    return 1\n"},
        {"role": "user", "content": "Please hurry."},
        {"role": "assistant", "content": "Running the tests now.", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "pytest", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "1 failed"},
    ]


def test_span_is_replaced_and_original_restored():
    msgs = transcript()
    ctx = Context.from_messages(msgs)
    out = apply_commands(ctx, [Command(prefix="BEGIN LISTING", suffix="END LISTING\n")])
    assert not out.rejected and len(out.applied) == 1
    new = out.messages
    assert new[3]["content"].startswith("[freemem: ") and "tokens freed]" in new[3]["content"]
    assert new[3]["tool_call_id"] == "call_1" and msgs[3]["content"].startswith("BEGIN")  # input untouched
    assert restore_messages(new, out.applied) == msgs
    assert pairing_violations(new) == []


def test_rejections_have_reasons():
    ctx = Context.from_messages(transcript())
    cmds = [
        Command(prefix="You are a coding", suffix="agent."),  # system message
        Command(prefix="file_0", suffix=".py"),  # ambiguous
        Command(prefix="nowhere to be found", suffix="x"),
        Command(prefix="BEGIN LISTING", suffix="no such suffix"),
        Command(prefix="  ", suffix="x"),
        Command(prefix="Running the tests", suffix="now."),  # most recent turn
        Command(prefix="Please", suffix="hurry."),  # latest human message
    ]
    out = apply_commands(ctx, cmds)
    assert [r.reason for r in out.rejected] == [
        "protected", "ambiguous_prefix", "prefix_not_found", "suffix_not_found", "empty_prefix", "protected",
        "protected"]
    assert out.applied == [] and out.text == ctx.text


def test_whitespace_insensitive_fallback():
    ctx = Context.from_messages(transcript())
    out = apply_commands(ctx, [Command(prefix="I   will now\nread", suffix="it is   mentioned.")])
    assert len(out.applied) == 1 and out.messages[4]["content"].startswith("[freemem:")


def test_cross_message_span_is_cut_and_headers_stay():
    msgs = transcript()
    ctx = Context.from_messages(msgs)
    # from inside the listing (message 3) into message 4's text: crosses the header of message 4
    out = apply_commands(ctx, [Command(prefix="file_039.py\nEND LISTING", suffix="because it is mentioned.")])
    assert len(out.applied) == 2, out.rejected
    new = out.messages
    assert new[3]["content"].endswith("tokens freed]") and new[4]["content"].startswith("[freemem:")
    assert "[assistant]\n" in out.text and "[tool read #call_2]" in out.text
    assert restore_messages(new, out.applied) == msgs


def test_overlapping_spans_merge():
    ctx = Context.from_messages(transcript())
    out = apply_commands(ctx, [Command(prefix="file_010.py", suffix="file_020.py\n"),
                               Command(prefix="file_015.py", suffix="file_030.py\n")])
    assert len(out.applied) == 1 and out.applied[0].command_indexes == (0, 1)
    assert "file_009.py" in out.text and "file_031.py" in out.text and "file_025.py" not in out.text


def test_header_can_anchor_a_whole_result():
    msgs = transcript()
    ctx = Context.from_messages(msgs)
    out = apply_commands(ctx, [Command(prefix="[tool ls #call_1]\nBEGIN", suffix="END LISTING\n")])
    assert len(out.applied) == 1
    assert out.messages[3]["content"].startswith("[freemem:")
    assert out.applied[0].original == msgs[3]["content"]


def test_round_over_share_is_refused_whole():
    text = "Question?\n" + "".join(f"line {i} of the derivation\n" for i in range(50)) + "the end.\n"
    ctx = Context.from_text(text, question="Question?", protection=Protection(recent_chars=10))
    out = apply_commands(ctx, [Command(prefix="line 0 of", suffix="line 40 of the derivation\n")],
                         max_freed_share=0.5)
    assert out.refused and out.applied == [] and out.rejected[0].reason == "round_refused"


def test_plain_text_protections_and_marker():
    text = ("What is 6*7?\nLet me think.\nWait wait, I said 41.\nThen \\boxed{42} is the answer.\n"
            + "More thinking here.\n" * 5)
    ctx = Context.from_text(text, question="What is 6*7?", protection=Protection(recent_chars=20))
    out = apply_commands(ctx, [Command(prefix="Wait wait", suffix="41.\n"), Command(prefix="What is", suffix="?"),
                               Command(prefix="Then \\boxed", suffix="answer.")])
    assert [r.reason for r in out.rejected] == ["protected", "protected"]
    assert DEFAULT_TEXT_MARKER in out.text and "\\boxed{42}" in out.text
    assert restore_text(out.text, out.applied) == text


def test_custom_marker_callable_and_template():
    ctx = Context.from_text("aaa UNIQUE-START bbb ccc UNIQUE-END ddd" + " z" * 2000)
    out = apply_commands(ctx, [Command(prefix="UNIQUE-START", suffix="UNIQUE-END")], marker="<cut {tokens}>")
    assert "<cut " in out.text and out.applied[0].marker.startswith("<cut ")
    out2 = apply_commands(ctx, [Command(prefix="UNIQUE-START", suffix="UNIQUE-END")],
                          marker=lambda original, tokens: f"[{len(original)} chars]")
    assert "[31 chars]" in out2.text


def test_langchain_messages_keep_ids_and_types():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    msgs = [SystemMessage("sys", id="s"), HumanMessage("task", id="h1"),
            AIMessage("calling", id="a1", tool_calls=[{"id": "c1", "name": "ls", "args": {}}]),
            ToolMessage("LISTING START\n" + "x.py\n" * 30 + "LISTING END", tool_call_id="c1", id="t1"),
            AIMessage("done", id="a2")]
    ctx = Context.from_messages(msgs)
    out = apply_commands(ctx, [Command(prefix="LISTING START", suffix="LISTING END")], max_freed_share=1.0)
    new = out.messages
    assert [m.id for m in new] == ["s", "h1", "a1", "t1", "a2"]
    assert isinstance(new[3], ToolMessage) and new[3].tool_call_id == "c1"
    assert new[3].content.startswith("[freemem:") and new[0] is msgs[0]
    assert restore_messages(new, out.applied) == msgs
