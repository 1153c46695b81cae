"""Blocks providers sign are never edited (freemem.core.blocks): the table's rows on the providers' documented
shapes, ``FreeMemory.clean`` over budget on LangChain and OpenAI-format transcripts full of signed thinking and
bulky tool output (0 kept blocks edited, the budget still met by what may go), restore giving the content lists
back equal, a hypothesis property over arbitrary commands, and tool-call arguments nested 2,000 deep."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from freemem import Command, Context, FreeMemory, InMemoryArchive, Protection, apply_commands, pairing_violations
from freemem.config import FoldPolicy
from freemem.core.archive import restore_event
from freemem.core.blocks import BLOCK_RULES, GEMINI_CALL_SIGNATURES_KEY, block_rule, is_signed
from freemem.core.errors import FormatError
from freemem.core.json_args import MAX_ARG_DEPTH, arg_strings, json_depth
from freemem.core.views import message_views
from freemem.lc import revive_message
from tests.support import provider_blocks as pb

# -- the table -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "row", "fate"), [
    (pb.anthropic_thinking(1), "signed thinking", "keep"),
    (pb.anthropic_redacted(1), "redacted thinking", "keep"),
    (pb.anthropic_cited_text(1), "text with citations", "keep"),
    ({"type": "tool_use", "id": "toolu_1", "name": "read_log", "input": {"service": "a"}}, "tool use", "keep"),
    (pb.openai_reasoning(1), "provider reasoning item", "keep"),
    ({"type": "reasoning", "id": "rs_1", "summary": []}, "provider reasoning item", "keep"),
    (pb.openai_cited_text(1), "text with citations", "keep"),
    (pb.gemini_thinking(1), "signed thinking", "keep"),
    (pb.gemini_signed_text(1), "signed text", "keep"),
    (pb.v1_reasoning(1, "x"), "signed reasoning", "keep"),
    ({"type": "reasoning", "reasoning": "r", "extras": {"encrypted_content": "gAAA"}}, "signed reasoning", "keep"),
    ({"type": "reasoning_content", "reasoning_content": {"text": "t", "signature": "s"}}, "signed block", "keep"),
    ({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}, "tool use", "keep"),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
     "image / document / media", "keep"),
    ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "image / document / media", "keep"),
    ({"type": "document", "source": {"type": "text", "data": "x"}}, "image / document / media", "keep"),
    ({"type": "mystery", "payload": 1}, "other block", "keep"),
    ({"type": "text", "text": "plain"}, "text", "edit"),
    ({"type": "output_text", "text": "plain", "annotations": []}, "text", "edit"),
    ({"type": "text", "text": "plain", "citations": None}, "text", "edit"),
    ("a string part", "text", "edit"),
    ({"type": "thinking", "thinking": "unsigned"}, "unsigned thinking", "edit"),
    ({"type": "thinking", "thinking": "empty signature", "signature": ""}, "unsigned thinking", "edit"),
    ({"type": "reasoning", "reasoning": "deepseek"}, "unsigned reasoning", "edit"),
])
def test_each_block_type_has_one_row(block: Any, row: str, fate: str) -> None:
    rule = block_rule(block)
    assert (rule.name, rule.fate) == (row, fate)
    assert rule in BLOCK_RULES
    assert rule.signed == (row.startswith(("signed", "redacted", "provider")))


def test_signature_search_is_bounded() -> None:
    deep: Any = {"signature": "s"}
    for _ in range(5_000):
        deep = {"x": deep}
    assert not is_signed({"type": "mystery", "payload": deep})  # too far in to be a block's signature
    assert is_signed({"type": "mystery", "extras": {"signature": "s"}})


def test_signed_blocks_are_protected_regions_and_their_text_still_counts() -> None:
    msgs = pb.provider_transcript("anthropic", 3)
    ctx = Context.from_messages(msgs, protection=Protection(recent_turn=False))
    thinking = pb.thinking_text(0)
    at = ctx.text.index(thinking)
    regions = ctx.regions_in(at, at + len(thinking))
    assert regions and all(not r.editable and r.reason == "signed thinking" for r in regions)
    memory = FreeMemory(counter="approx")
    stripped = [m.model_copy(update={"content": [b for b in m.content if not block_rule(b).signed]})
                if isinstance(m, AIMessage) else m for m in msgs]
    # the four thinking texts are counted (placeholders for redacted blocks aside)
    assert memory.count_messages(msgs) - memory.count_messages(stripped) >= 4 * memory.count_text(thinking) * 0.9


# -- FreeMemory.clean over budget -----------------------------------------------------------------------------

def _kept_equal(before: list[Any], after: list[Any]) -> int:
    """Every kept block of a message still in ``after`` is byte-identical to ``before``'s; returns how many
    were compared."""
    old = pb.kept_blocks(before)
    new = pb.kept_blocks(after)
    present = {str(m["id"] if isinstance(m, dict) else m.id) for m in after}
    expected = {k: v for k, v in old.items() if k[0] in present}
    assert new == expected
    return len(expected)


@pytest.mark.parametrize("provider", pb.PROVIDERS)
@pytest.mark.parametrize("fold", [False, True])
def test_clean_over_budget_edits_no_signed_block(provider: pb.Provider, fold: bool) -> None:
    msgs = pb.provider_transcript(provider, 12)
    original = copy.deepcopy(msgs)
    archive = InMemoryArchive()
    memory = FreeMemory(counter="approx", budget=9_000, fold=fold, archive=archive)
    before = memory.count_messages(msgs)
    assert before > 2 * 9_000
    result = memory.clean(msgs)
    assert result.changed and result.messages is not None
    assert msgs == original  # the input is never mutated
    compared = _kept_equal(original, result.messages)
    assert compared >= (3 if fold else 12)
    assert pb.signed_count(result.messages) > 0
    assert pairing_violations(result.messages) == []
    after = memory.count_messages(result.messages)
    assert after < before // 2
    if fold:
        assert after <= 9_000
    # the archive gives the content lists back equal
    archive.record("t", result.event.to_dict(spans=True))
    restored = restore_event(result.messages, archive.events("t")[-1], revive=revive_message)
    assert [m.content for m in restored] == [m.content for m in original]
    assert [m.additional_kwargs for m in restored] == [m.additional_kwargs for m in original]
    assert [getattr(m, "tool_calls", None) for m in restored] == [getattr(m, "tool_calls", None) for m in original]


def test_issue_shape_eleven_thinking_blocks_none_edited() -> None:
    """The issue's measurement: an AIMessage history with 11 older signed thinking blocks, over budget."""
    msgs: list[Any] = [HumanMessage("Plan the migration.", id="h0")]
    for k in range(12):
        msgs.append(AIMessage(content=[pb.anthropic_thinking(k), {"type": "text", "text": pb.tool_output(k, 30)}],
                              id=f"a{k}"))
        msgs.append(HumanMessage(f"Go on with part {k + 1}.", id=f"h{k + 1}"))
    memory = FreeMemory(counter="approx", budget=4_000, fold=False)
    result = memory.clean(msgs)
    assert result.changed and result.messages is not None
    assert _kept_equal(msgs, result.messages) == 12
    edited = [m for m, o in zip(result.messages, msgs) if m.content != o.content]
    assert edited  # the plain text blocks were cut ...
    for m, o in zip(result.messages, msgs):
        if isinstance(m, AIMessage):  # ... and only they
            assert m.content[0] == o.content[0]


def test_dict_messages_keep_litellm_thinking_and_signed_calls() -> None:
    msgs = pb.dict_transcript(12)
    original = copy.deepcopy(msgs)
    archive = InMemoryArchive()
    for fold in (False, True):
        memory = FreeMemory(counter="approx", budget=8_000, fold=fold, archive=archive)
        result = memory.clean(msgs)
        assert result.changed and result.messages is not None
        assert msgs == original
        assert _kept_equal(original, result.messages) >= (4 if fold else 20)
        assert pairing_violations(result.messages) == []
        thread = f"d{fold}"
        archive.record(thread, result.event.to_dict(spans=True))
        assert restore_event(result.messages, archive.events(thread)[-1]) == original


def test_reasoning_text_beside_signed_details_is_kept() -> None:
    details = [{"type": "reasoning.text", "text": "t", "signature": pb.signature("or"), "format": "anthropic-claude-v1"}]
    encrypted = [{"type": "reasoning.encrypted", "data": pb.signature("enc"), "format": "openai-responses-v1"}]
    long = pb.thinking_text(3)
    cases: list[Any] = [
        {"role": "assistant", "id": "a", "content": "ok", "reasoning": long, "reasoning_details": details},
        {"role": "assistant", "id": "a", "content": "ok", "reasoning": long, "reasoning_details": encrypted},
        AIMessage("ok", id="a", additional_kwargs={"reasoning_content": long, "reasoning_details": details}),
        AIMessage("ok", id="a", additional_kwargs={"reasoning_content": long,
                                                   "thinking_blocks": [pb.anthropic_thinking(3)]}),
    ]
    for msg in cases:
        msgs = [{"role": "user", "content": "q", "id": "u"}, msg, {"role": "user", "content": "next", "id": "n"},
                {"role": "assistant", "content": "end", "id": "z"}]
        if not isinstance(msg, dict):
            msgs = [HumanMessage("q", id="u"), msg, HumanMessage("next", id="n"), AIMessage("end", id="z")]
        view = message_views(msgs)[1]
        assert view.signed and set(view.kept.values()) == {"mirrors signed thinking blocks"}
        ctx = Context.from_messages(msgs)
        assert not any(r.editable for r in ctx.regions if r.message_index == 1 and r.field != "content")
        assert any(r.field and r.field.startswith("reasoning") and not r.editable for r in ctx.regions)
    unsigned = [{"role": "user", "content": "q", "id": "u"},
                {"role": "assistant", "id": "a", "content": "ok", "reasoning_content": long},
                {"role": "user", "content": "next", "id": "n"}, {"role": "assistant", "content": "end", "id": "z"}]
    ctx = Context.from_messages(unsigned)
    assert any(r.editable and r.field == "reasoning_content" for r in ctx.regions)


def test_signed_latest_turn_stays_whole_without_recent_turn_protection() -> None:
    msgs = pb.provider_transcript("anthropic", 6)[:-1]  # the loop is unfinished: the last message is a result
    protection = Protection(recent_turn=False)
    ctx = Context.from_messages(msgs, protection=protection)
    last_ai, last_tool = len(msgs) - 2, len(msgs) - 1
    for r in ctx.regions:
        if r.message_index in (last_ai, last_tool):
            assert not r.editable
    older_tool = ctx.regions_in(*_field_span(ctx, 3))
    assert any(r.editable for r in older_tool)  # an older tool result stays editable
    memory = FreeMemory(counter="approx", budget=3_000, protection=protection, fold=FoldPolicy(keep_units=0))
    result = memory.clean(msgs)
    assert result.messages is not None
    assert result.messages[-2:] == msgs[-2:]


def _field_span(ctx: Context, index: int) -> tuple[int, int]:
    spans = [(r.start, r.end) for r in ctx.regions if r.message_index == index]
    return spans[0][0], spans[-1][1]


def test_gemini_signed_call_keeps_its_arguments_whole() -> None:
    long = "x" * 400
    signed = AIMessage(content="", id="g1", tool_calls=[
        {"name": "write", "args": {"body": long}, "id": "c1", "type": "tool_call"},
        {"name": "write", "args": {"body": long + "y"}, "id": "c2", "type": "tool_call"}],
        additional_kwargs={GEMINI_CALL_SIGNATURES_KEY: {"c1": pb.signature("c1")}})
    msgs = [HumanMessage("go", id="h"), signed, ToolMessage("ok", tool_call_id="c1", id="t1"),
            ToolMessage("ok", tool_call_id="c2", id="t2"), AIMessage("done", id="end")]
    view = message_views(msgs)[1]
    assert view.signed and view.signed_calls == frozenset({0})
    ctx = Context.from_messages(msgs)
    editable = {r.field for r in ctx.regions if r.editable and r.message_index == 1}
    assert editable == {"tool_calls[1].body"}
    reasons = {r.reason for r in ctx.regions if r.message_index == 1 and not r.editable}
    assert "signed tool call" in reasons


# -- any commands ----------------------------------------------------------------------------------------------

_FIXTURES = {p: pb.provider_transcript(p, 4) for p in pb.PROVIDERS}
_CONTEXTS = {p: Context.from_messages(m, protection=Protection(recent_turn=False)) for p, m in _FIXTURES.items()}


@st.composite
def _commands(draw: Any) -> tuple[str, list[Command]]:
    provider = draw(st.sampled_from(pb.PROVIDERS))
    text = _CONTEXTS[provider].text
    commands = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(text) - 2))
        end = draw(st.integers(start + 1, min(len(text), start + 3_000)))
        plen = draw(st.integers(1, 40))
        slen = draw(st.integers(1, 40))
        commands.append(Command(prefix=text[start:start + plen], suffix=text[max(start + plen, end - slen):end]))
    return provider, commands


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_commands())
def test_no_command_edits_a_kept_block(drawn: tuple[str, list[Command]]) -> None:
    provider, commands = drawn
    ctx = _CONTEXTS[provider]
    outcome = apply_commands(ctx, commands, max_freed_share=1.0)
    assert pb.kept_blocks(outcome.messages) == pb.kept_blocks(_FIXTURES[provider])


# -- hostile structure -----------------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_json_depth_counts_without_recursion() -> None:
    assert json_depth("1") == 0
    assert json_depth('{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert json_depth('{"a": "\\"[[[", "b": [[]]}') == 3
    assert json_depth(_nested(50_000)) == 50_000
    assert json_depth(_nested(50_000), stop=MAX_ARG_DEPTH) == MAX_ARG_DEPTH + 1
    assert json_depth(_nested(10), stop=MAX_ARG_DEPTH) <= MAX_ARG_DEPTH
    assert arg_strings('{"s": "' + "x" * 300 + '", "n": ' + _nested(5_000) + "}") == []


def test_arguments_nested_2000_deep_give_a_format_error_not_a_recursion_error() -> None:
    deep_text = '{"path": "a.py", "opts": ' + _nested(2_000) + "}"
    dict_msgs = [{"role": "user", "content": "go", "id": "u"},
                 {"role": "assistant", "content": "", "id": "a", "tool_calls": [
                     {"id": "c", "type": "function", "function": {"name": "f", "arguments": deep_text}}]},
                 {"role": "tool", "tool_call_id": "c", "content": pb.tool_output(1), "id": "t"},
                 {"role": "assistant", "content": "done", "id": "z"}]
    memory = FreeMemory(counter="approx", budget=100)
    with pytest.raises(FormatError, match="nest deeper"):
        memory.clean(dict_msgs)
    value: Any = 1
    for _ in range(2_000):
        value = {"a": value}
    lc_call = AIMessage.model_construct(content="", id="a", type="ai", additional_kwargs={}, response_metadata={},
                                        tool_calls=[{"name": "f", "args": {"opts": value}, "id": "c",
                                                     "type": "tool_call"}], invalid_tool_calls=[])
    lc_msgs = [HumanMessage("go", id="u"), lc_call, ToolMessage(pb.tool_output(1), tool_call_id="c", id="t"),
               AIMessage("done", id="z")]
    with pytest.raises(FormatError, match="nest deeper"):
        memory.clean(lc_msgs)
    as_args = {"role": "assistant", "content": "", "id": "a",
               "tool_calls": [{"id": "c", "name": "f", "args": {"opts": value}}]}
    with pytest.raises(FormatError, match="nest deeper"):
        memory.clean([dict_msgs[0], as_args, *dict_msgs[2:]])
    # not JSON at all (nothing parses it deeply): cleaned like any text
    text_args = {**dict_msgs[1], "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "f", "arguments": "print(a" + "[" * 3_000 + ")"}}]}
    assert memory.clean([dict_msgs[0], text_args, *dict_msgs[2:]]).messages is not None
    # within the limit: a normal clean
    ok = json.loads(_nested(MAX_ARG_DEPTH - 2))
    fine = {**dict_msgs[1], "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "f", "arguments": json.dumps({"opts": ok})}}]}
    result = memory.clean([dict_msgs[0], fine, *dict_msgs[2:]])
    assert result.messages is not None


@st.composite
def _mixed_transcripts(draw: Any) -> list[Any]:
    """A LangChain transcript whose assistant steps come from any provider, in any order, some without tool
    calls, with user messages between them."""
    msgs: list[Any] = [HumanMessage("Why does svc3 drop connections?", id="task")]
    for k in range(draw(st.integers(3, 14))):
        if draw(st.integers(0, 5)) == 0:
            msgs.append(HumanMessage(f"Also check svc{k}. " * draw(st.integers(1, 30)), id=f"h{k}"))
            continue
        call = draw(st.booleans()) or k == 0
        step = pb.assistant_step(draw(st.sampled_from(pb.PROVIDERS)), k, call=call)
        step = step.model_copy(update={"id": f"ai-{k}"})
        msgs.append(step)
        if call:
            msgs.append(ToolMessage(pb.tool_output(k, draw(st.integers(5, 120))),
                                    tool_call_id=step.tool_calls[0]["id"], id=f"t{k}"))
    return msgs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixed_transcripts(), st.integers(1_500, 12_000), st.booleans(), st.booleans())
def test_any_transcript_any_budget_keeps_every_kept_block(msgs: list[Any], budget: int, fold: bool,
                                                          recent_turn: bool) -> None:
    archive = InMemoryArchive()
    memory = FreeMemory(counter="approx", budget=budget, fold=fold, archive=archive,
                        protection=Protection(recent_turn=recent_turn))
    result = memory.clean(msgs)
    event(f"changed={result.changed}, folded={bool(result.event.folds) if result.changed else None}")
    if not result.changed:
        return
    assert result.messages is not None
    _kept_equal(msgs, result.messages)
    assert pairing_violations(result.messages) == []
    last_ai = next(m for m in reversed(msgs) if isinstance(m, AIMessage))
    assert any(m is last_ai or m == last_ai for m in result.messages)  # the latest assistant turn stays whole
    archive.record("p", result.event.to_dict(spans=True))
    restored = restore_event(result.messages, archive.events("p")[-1], revive=revive_message)
    assert [(m.id, m.content) for m in restored] == [(m.id, m.content) for m in msgs]
