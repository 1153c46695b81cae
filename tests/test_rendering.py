"""What a model cleaner is shown (freemem.core.rendering) and how its anchors map back; the v2 prompt templates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from freemem import Command, Context, FreeMemory, HeuristicCleaner, Protection, apply_commands, restore_messages
from freemem.cleaners.prompted import PromptedCleaner
from freemem.core.errors import ConfigError
from freemem.core.rendering import RenderOptions, readable_arguments, render_context
from freemem.prompts import PromptTemplate, load_template

BODY = 'def main():\n    print("hello")\n    return 0\n' * 8  # long enough to be an editable argument value


def edit_call(call_id: str, path: str, body: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": "write_file", "arguments": json.dumps({"path": path, "content": body})}}


def transcript() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a coding agent. " * 100},
        {"role": "user", "content": "Write main.py, then run it."},
        {"role": "assistant", "content": "Writing the file.", "tool_calls": [edit_call("c1", "main.py", BODY)]},
        {"role": "tool", "tool_call_id": "c1", "content": "wrote 360 bytes"},
        {"role": "assistant", "content": "Writing it again with a note.", "tool_calls": [
            edit_call("c2", "notes.txt", 'a "quoted"\nline')]},
        {"role": "tool", "tool_call_id": "c2", "content": "wrote 16 bytes"},
    ]


# -- rendering ----------------------------------------------------------------------------------------------


def test_protected_runs_are_tagged_and_editable_text_is_verbatim() -> None:
    ctx = Context.from_messages(transcript())
    shown = render_context(ctx)
    text = shown.text
    assert "[user]\n<protected>Write main.py, then run it.</protected>" in text
    assert "[assistant]\nWriting the file." in text  # editable, as stored
    # the system prompt (2,400 chars) shows its head and tail only
    assert "<protected>You are a coding agent." in text and " protected chars not shown ...]" in text
    assert shown.hidden_chars == 2400 - 1000 and shown.protected_chars > 2400
    # every editable region is shown verbatim and maps back to itself
    for r in shown.index.regions:
        if r.editable:
            src = shown.to_source(r.start, r.end)
            assert src is not None and ctx.text[src[0]:src[1]] == text[r.start:r.end]
    # a marker maps nowhere
    at = text.index("<protected>")
    assert shown.to_source(at, at + 5) is None


def test_protected_arguments_are_shown_decoded() -> None:
    ctx = Context.from_messages(transcript())
    assert '"a \\"quoted\\"\\nline"' in ctx.text  # the stored form: escaped JSON (most recent turn)
    shown = render_context(ctx)
    assert '"content": "a "quoted"\nline"}</protected>' in shown.text
    assert render_context(ctx, RenderOptions(decode_arguments=False)).text.count('\\"quoted\\"') == 1


def test_elide_replaces_protected_runs_by_a_note() -> None:
    ctx = Context.from_messages(transcript())
    shown = render_context(ctx, RenderOptions(protected="elide"))
    assert "[system]\n[protected: 2,400 chars, not editable]" in shown.text
    assert "<protected>" not in shown.text and "Write main.py" not in shown.text
    assert shown.hidden_chars == shown.protected_chars


def test_plain_text_marks_question_recency_window_and_answer_lines() -> None:
    text = "Q: 2+2?\nthinking 2+2=5\n\\boxed{4}\nmore thinking\n" + "recent " * 10
    ctx = Context.from_text(text, question="Q: 2+2?", protection=Protection(recent_chars=30))
    shown = render_context(ctx).text
    assert shown.startswith("<protected>Q: 2+2?</protected>\nthinking 2+2=5\n<protected>\\boxed{4}</protected>")
    assert shown.endswith("</protected>") and "more thinking" in shown


def test_bad_options() -> None:
    for bad in ({"protected": "hide"}, {"max_shown": -1}, {"head_chars": 900, "tail_chars": 900},
                {"open_tag": ""}):
        with pytest.raises(ConfigError):
            RenderOptions(**bad)
    with pytest.raises(ConfigError):
        RenderOptions.of("everything")
    assert RenderOptions.of("raw") is None and RenderOptions.of("auto", auto="elide").protected == "elide"


def test_readable_arguments() -> None:
    assert readable_arguments('{"a": "x\\ny", "n": 1.50, "k": [true, null, "\\u00e9"]}') == \
        '{"a": "x\ny", "n": 1.50, "k": [true, null, "é"]}'
    assert readable_arguments('{"a": 1}') is None and readable_arguments('{"a": "\\n"') is None
    assert readable_arguments('{"a": "\\n", "a": "2"}') == '{"a": "\n", "a": "2"}'  # duplicates shown as written


# -- anchors copied from what the model saw ------------------------------------------------------------------


def test_an_anchor_from_an_unescaped_argument_deletes_in_the_real_json() -> None:
    msgs = transcript()
    ctx = Context.from_messages(msgs)
    shown = render_context(ctx)
    # copied from the rendered (decoded) argument: real newlines and quotes
    cmd = Command(prefix='def main():\n    print("hello")\n    return 0\ndef main():', suffix='print("hello")\n')
    assert cmd.prefix in shown.text
    out = apply_commands(ctx, [cmd], shown=shown, repeated="first")
    assert out.rejected == [] and len(out.applied) == 1
    args = out.messages[2]["tool_calls"][0]["function"]["arguments"]
    value = json.loads(args)["content"]  # still valid JSON
    assert value.startswith("[freemem: ") and value.endswith(BODY[len('def main():\n    print("hello")\n    return 0\n'
                                                                       'def main():\n    print("hello")\n'):])
    assert json.loads(args)["path"] == "main.py"
    assert restore_messages(out.messages, out.applied) == msgs  # byte-exact, escapes as written
    # under "all" the four non-overlapping copies go, each edited in place in the JSON string
    out = apply_commands(ctx, [cmd], shown=shown, repeated="all", max_freed_share=1.0)
    assert len(out.applied) == 4
    assert json.loads(out.messages[2]["tool_calls"][0]["function"]["arguments"])["content"].count("freed]") == 4
    assert restore_messages(out.messages, out.applied) == msgs


def test_a_span_running_out_of_an_argument_keeps_the_json_structure() -> None:
    msgs = transcript()
    ctx = Context.from_messages(msgs, protection=Protection(recent_turn=False, last_human=False))
    shown = render_context(ctx)
    # from inside the argument value, across the JSON's closing quote and the next header, into the tool result
    out = apply_commands(ctx, [Command(prefix='print("hello")\n    return 0\n"}', suffix="wrote 360")], shown=shown)
    assert out.rejected == [] and len(out.applied) == 2  # one piece per field; the structure between stays
    args = json.loads(out.messages[2]["tool_calls"][0]["function"]["arguments"])
    assert args["path"] == "main.py" and args["content"].endswith("tokens freed]")
    assert out.messages[3]["content"].endswith(" bytes")
    assert restore_messages(out.messages, out.applied) == msgs


def test_anchors_in_protected_text_are_rejected_as_protected_not_lost() -> None:
    ctx = Context.from_messages(transcript())
    shown = render_context(ctx)
    decoded = Command(prefix='a "quoted"\nline', suffix="")  # copied from a protected, decoded argument
    tagged = Command(prefix="<protected>Write main.py", suffix="")  # copied with the marker
    hidden = Command(prefix="agent. You are", suffix="")  # in the system prompt
    out = apply_commands(ctx, [decoded, tagged, hidden], shown=shown)
    assert [r.reason for r in out.rejected] == ["protected"] * 3
    assert "most recent turn" in out.rejected[0].detail and "system message" in out.rejected[2].detail
    # shown the raw text, the decoded anchor would not even be found
    assert apply_commands(ctx, [decoded]).rejected[0].reason == "prefix_not_found"


def test_shown_must_be_this_contexts_rendering() -> None:
    ctx = Context.from_messages(transcript())
    other = render_context(Context.from_messages(transcript()))
    with pytest.raises(ConfigError, match="shown"):
        apply_commands(ctx, [], shown=other)


# -- the cleaners ------------------------------------------------------------------------------------------


SEEN: list[Any] = []


class Recorder(FakeListChatModel):
    def _call(self, messages, *args, **kwargs):  # type: ignore[override]
        SEEN.append(messages)
        return super()._call(messages, *args, **kwargs)


def test_prompted_cleaner_shows_the_rendering_and_its_anchors_apply_everywhere() -> None:
    loop = "Let me recheck the sum of 12 and 30, which is 42 again. "
    text = ("Question: what is 12 + 30?\n12 + 30 = 42, since 10 + 30 = 40 and 2 more make 42.\n" + loop * 4
            + "\nrecent part " * 5)
    answer = json.dumps({"commands": [{"prefix": "Let me recheck the sum", "suffix": "which is 42 again."}]})
    model = Recorder(responses=[answer])
    SEEN.clear()
    memory = FreeMemory(cleaner=PromptedCleaner(model), counter="approx", protection=Protection(recent_chars=60))
    result = memory.clean_text(text, question="Question: what is 12 + 30?")
    human = SEEN[0][-1].content
    assert "<protected>Question: what is 12 + 30?</protected>" in human
    assert "never copy an anchor" in SEEN[0][0].content.lower()  # the system part explains the marking
    assert result.event.applied == 4 and "recheck" not in result.text  # repeated="all": every copy
    assert result.text.startswith("Question: what is 12 + 30?\n12 + 30 = 42, since")


def test_cleaners_declare_render_and_repeated() -> None:
    model = FakeListChatModel(responses=["[]"])
    c = PromptedCleaner(model)
    assert c.repeated == "all" and c.render is not None and c.render.protected == "mark"
    assert c.template.version == "prompted_v3" and HeuristicCleaner().repeated == "reject"
    old = PromptedCleaner(model, template="prompted_v1")
    assert old.render is None  # v1 shows the context's own text, as before
    ctx = Context.from_text("Q\nsome text", question="Q", protection=Protection(recent_chars=0))
    assert old.prompt_text(ctx) == (ctx.text, None)
    text, shown = PromptedCleaner(model, template="prompted_v1", render="elide").prompt_text(ctx)
    assert text == "[protected: 1 chars, not editable]\nsome text" and shown is not None
    p = PromptedCleaner(model).propose(ctx)
    assert p.shown is not None and p.shown.context is ctx and p.extra["render"] == "mark"
    assert PromptedCleaner(model).propose("just a string").shown is None
    with pytest.raises(ConfigError, match="repeated"):
        PromptedCleaner(model, repeated="most")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="render"):
        PromptedCleaner(model, render="loud")  # type: ignore[arg-type]


# -- templates ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["free_module_v2", "prompted_v2", "free_module_v3", "prompted_v3"])
def test_v2_templates_have_a_real_worked_example_and_no_easy_exit(name: str) -> None:
    t = load_template(name)
    options = RenderOptions(collapse_repeats=t.collapse_repeats)
    assert t.render_mode == "mark" and "<protected>" in t.system and t.examples
    whole = t.render_prompt("X")
    assert '"..."' not in whole and "If nothing" not in whole and '{"commands": []}' not in whole
    # the worked examples are real: each answer applies exactly to its own context, shown as the renderer shows it
    for user, assistant in t.examples:
        shown_text = user.split("<context>\n", 1)[1].split("\n</context>", 1)[0]
        assert user.replace(shown_text, "{context}") == t.user  # the example asks exactly what the real turn asks
        answer = json.loads(assistant)
        if shown_text.startswith("["):  # a transcript
            ctx = Context.from_messages(_example_messages())
        else:
            src = re.sub(r'<repeated times="(\d+)">\n(.*?)</repeated>\n', lambda m: m.group(2) * int(m.group(1)),
                         shown_text, flags=re.DOTALL)  # a passage shown once stands for its copies
            src = src.replace("<protected>", "").replace("</protected>", "")
            ctx = Context.from_text(src, question=src.splitlines()[0], protection=Protection(recent_chars=0))
        shown = render_context(ctx, options)
        assert shown.text == shown_text
        out = apply_commands(ctx, answer["commands"], shown=shown, repeated="all", max_freed_share=1.0)
        assert out.applied and not [r for r in out.rejected if r.reason != "frees_nothing"], out.rejected
    # sent as earlier turns of the chat, before the real request
    roles = [m["role"] for m in t.render("CTX")]
    assert roles == ["system"] + ["user", "assistant"] * len(t.examples) + ["user"]
    assert "CTX" in t.render("CTX")[-1]["content"] and "CTX" not in t.render("CTX")[1]["content"]


def test_template_examples_round_trip_and_are_checked(tmp_path: Path) -> None:
    t = PromptTemplate(version="e1", system="s", user="{context}", examples=(("ctx a", '{"commands": []}'),))
    assert PromptTemplate.loads(t.dumps()) == t
    assert t.render_prompt("C") == 's\n\nctx a\n\n{"commands": []}\n\nC'
    for bad in ("=== example user ===\nu\n=== user ===\n{context}",
                "=== example assistant ===\na\n=== user ===\n{context}",
                "=== example user ===\nu\n=== example user ===\nu2\n=== user ===\n{context}"):
        with pytest.raises(ConfigError, match="example"):
            PromptTemplate.loads(bad, default_version="x")
    j = tmp_path / "ex.json"
    j.write_text(json.dumps({"version": "j", "user": "{context}", "examples": [{"user": "u", "assistant": "a"}]}),
                 encoding="utf-8")
    assert load_template(j).examples == (("u", "a"),)
    j.write_text(json.dumps({"version": "j", "user": "{context}", "examples": [{"user": "u"}]}), encoding="utf-8")
    with pytest.raises(ConfigError, match="examples"):
        load_template(j)


def test_prompted_cleaner_sends_examples_as_earlier_turns() -> None:
    SEEN.clear()
    PromptedCleaner(Recorder(responses=["[]"])).propose(Context.from_text("Q\nsome text", question="Q"))
    assert [m.type for m in SEEN[0]] == ["system", "human", "ai", "human", "ai", "human"]


def _example_messages() -> list[dict[str, Any]]:
    def read(call_id: str) -> dict[str, Any]:
        return {"id": call_id, "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "parser.py"}'}}

    return [
        {"role": "user", "content": "Why does test_parse fail?"},
        {"role": "assistant", "id": "m1", "content": "I will read the parser.", "tool_calls": [read("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "def parse(s):\n    return int(s)"},
        {"role": "assistant", "id": "m2", "content": "I will read it again to be sure.", "tool_calls": [read("c2")]},
        {"role": "tool", "tool_call_id": "c2", "content": "def parse(s):\n    return int(s)"},
        {"role": "assistant", "id": "m3", "content": 'parse() fails on "1.5": int() cannot read decimals.'},
    ]


def test_v1_templates_stay_loadable_and_raw() -> None:
    for name in ("free_module_v1", "prompted_v1"):
        t = load_template(name)
        assert t.version == name and t.render_mode == "raw"


def test_template_render_mode_round_trips_and_is_checked(tmp_path: Path) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("version: mine_v1\nrender_mode: elide\n=== user ===\n{context}\n", encoding="utf-8")
    t = load_template(f)
    assert t.render_mode == "elide" and PromptTemplate.loads(t.dumps()) == t
    assert PromptedCleaner(FakeListChatModel(responses=["[]"]), template=f).render.protected == "elide"
    j = tmp_path / "mine.json"
    j.write_text(json.dumps({"version": "j", "user": "{context}", "render_mode": "mark"}), encoding="utf-8")
    assert load_template(j).render_mode == "mark"
    with pytest.raises(ConfigError, match="render_mode"):
        PromptTemplate(version="x", user="{context}", render_mode="fancy")
