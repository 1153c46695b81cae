"""apply_commands(repeated=...): the Free()LM paper's every-match semantics ("all"), the first match ("first"),
and freemem's unique-prefix rule ("reject"), with every invariant held in each mode."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freemem import (
    Command,
    Context,
    FreeMemory,
    HeuristicCleaner,
    Protection,
    apply_commands,
    restore_messages,
    restore_text,
)
from freemem.core.apply import DEFAULT_TEXT_MARKER
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.errors import ConfigError
from freemem.core.rendering import RenderOptions, render_context
from tests.test_invariants import WORDS, check_invariants, commands_for, protections, transcripts

LOOP = "Let me recompute: 17 * 23 = 391, so the product is 391. "
QUESTION = "Question: what is 17 * 23?\n"


def loop_text(copies: int = 4) -> str:
    return QUESTION + "17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391.\n" + LOOP * copies + "\nDone looping.\n"


LOOP_CMD = Command(prefix="Let me recompute:", suffix="the product is 391.")


def plain(text: str, **kw) -> Context:
    return Context.from_text(text, question=QUESTION, protection=Protection(recent_chars=0), **kw)


# -- the three modes ----------------------------------------------------------------------------------------


def test_all_removes_every_copy_of_a_loop_and_restores_exactly() -> None:
    text = loop_text(5)
    out = apply_commands(plain(text), [LOOP_CMD], repeated="all")
    assert out.rejected == [] and len(out.applied) == 5 and out.skipped == []
    assert "recompute" not in out.text and out.text.count(DEFAULT_TEXT_MARKER) == 5
    assert out.text.startswith(QUESTION) and "340 + 51 = 391." in out.text
    assert all(s.original == LOOP.rstrip() for s in out.applied)
    assert {i for s in out.applied for i in s.command_indexes} == {0}
    assert restore_text(out.text, out.applied) == text


def test_reject_says_how_many_matches_and_where() -> None:
    out = apply_commands(plain(loop_text(5)), [LOOP_CMD])  # the default mode
    [r] = out.rejected
    assert r.reason == "ambiguous_prefix" and out.applied == []
    assert "occurs 5 times in editable text" in r.detail and "at char " in r.detail and "(2 more)" in r.detail
    assert "repeated='reject'" in r.detail


LISTING = " ".join(f"f{i}.py" for i in range(20)) + " b.py"


def test_reject_detail_names_messages() -> None:
    msgs = [{"role": "user", "content": "go"}]
    for k in range(3):
        msgs += [{"role": "assistant", "content": f"step {k}", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": f"c{k}", "content": "same listing: " + LISTING}]
    out = apply_commands(Context.from_messages(msgs), [Command(prefix="same listing", suffix="b.py")])
    [r] = out.rejected
    assert "occurs 2 times" in r.detail and "at message 2 content, message 4 content" in r.detail
    # under "all" both older copies go; the copy in the most recent turn is protected
    out = apply_commands(Context.from_messages(msgs), [Command(prefix="same listing", suffix="b.py")],
                         repeated="all", max_freed_share=1.0)
    assert [s.message_index for s in out.applied] == [2, 4] and out.messages[6] == msgs[6]
    assert restore_messages(out.messages, out.applied) == msgs


def test_first_removes_only_the_first_match() -> None:
    text = loop_text(3)
    out = apply_commands(plain(text), [LOOP_CMD], repeated="first")
    assert len(out.applied) == 1 and out.text.count("recompute") == 2
    assert out.applied[0].start == text.index(LOOP)
    assert restore_text(out.text, out.applied) == text


def test_a_unique_prefix_means_the_same_in_every_mode() -> None:
    text = loop_text(1)
    results = [apply_commands(plain(text), [LOOP_CMD], repeated=mode) for mode in ("reject", "all", "first")]
    assert len({r.text for r in results}) == 1 and all(len(r.applied) == 1 for r in results)


def test_matches_are_non_greedy_and_non_overlapping() -> None:
    text = QUESTION + "A one x. A two x. x. A three x.\n"
    out = apply_commands(plain(text), [Command(prefix="A ", suffix="x.")], repeated="all")
    assert [s.original for s in out.applied] == ["A one x.", "A two x.", "A three x."]
    assert out.text == QUESTION + "<Del> <Del> x. <Del>\n"


def test_a_match_touching_protected_text_is_skipped_and_the_others_apply() -> None:
    # "Final answer" lines are protected: the copy whose suffix lies past one cannot go, the others do.
    text = QUESTION + "Try: 1 + 1 = 3. ok.\nTry: 2 + 2 =\nFinal answer: 4\n5. ok.\nTry: 3 + 3 = 7. ok.\n"
    out = apply_commands(plain(text), [Command(prefix="Try:", suffix="ok.")], repeated="all")
    assert [s.original for s in out.applied] == ["Try: 1 + 1 = 3. ok.", "Try: 3 + 3 = 7. ok."]
    assert "Final answer: 4" in out.text and out.rejected == []
    [skip] = out.skipped
    assert skip.command_index == 0 and skip.reason == "protected" and "answer line" in skip.detail
    assert out.summary()["skipped"] == 1
    assert restore_text(out.text, out.applied) == text


def test_a_skipped_match_does_not_consume_the_text_after_it() -> None:
    # The first occurrence of the prefix runs into the protected range; the second, inside the same stretch
    # of text, still matches on its own (a regex substitution would have swallowed it).
    text = "A start. [KEEP] A again x. tail tail tail"
    keep = text.index("[KEEP]")
    ctx = Context.from_text(text, protection=Protection(recent_chars=0), protect=[(keep, keep + 6)])
    out = apply_commands(ctx, [Command(prefix="A ", suffix="x.")], repeated="all")
    assert [s.original for s in out.applied] == ["A again x."]
    assert out.skipped and out.skipped[0].reason == "protected"


def test_when_every_match_is_protected_the_command_is_rejected_with_the_reason() -> None:
    text = QUESTION + "Try: 2 + 2 =\nFinal answer: 4\nok.\n"
    out = apply_commands(plain(text), [Command(prefix="Try:", suffix="ok.")], repeated="all")
    [r] = out.rejected
    assert r.reason == "protected" and "no match can be removed" in r.detail and "answer line" in r.detail


@pytest.mark.parametrize("mode", ["all", "first"])
def test_the_other_rejections_keep_their_reasons(mode: str) -> None:
    ctx = plain(loop_text(2))
    out = apply_commands(ctx, [Command(prefix="nowhere", suffix="x"), Command(prefix="Let me recompute:",
                                                                              suffix="no such suffix"),
                               Command(prefix="Question: what", suffix="23?"), Command(prefix=" ", suffix="x"),
                               LOOP_CMD, LOOP_CMD], repeated=mode)
    assert [r.reason for r in out.rejected] == ["prefix_not_found", "suffix_not_found", "protected",
                                                "empty_prefix", "duplicate"]
    assert "not found" in out.rejected[0].detail and "protected text (question)" in out.rejected[2].detail
    assert len(out.applied) == (2 if mode == "all" else 1)


def test_generic_anchors_cannot_shred_the_text() -> None:
    text = QUESTION + "the cat and the dog and the bird " * 3 + "\n"
    ctx = plain(text)
    # matches no longer than their marker free nothing: skipped, and the command with only such matches goes
    out = apply_commands(ctx, [Command(prefix="e", suffix="")], repeated="all")
    assert out.applied == [] and [r.reason for r in out.rejected] == ["frees_nothing"]
    # one short match is the cleaner's explicit choice, as under "reject"
    out = apply_commands(ctx, [Command(prefix="Question", suffix="")], repeated="all")
    assert out.rejected[0].reason == "protected"
    # past max_matches the command is rejected whole
    many = QUESTION + "Wait, let me check that again. " * 40
    out = apply_commands(plain(many), [Command(prefix="Wait, let", suffix="again.")], repeated="all",
                         max_matches=10, max_freed_share=1.0)
    assert out.applied == [] and out.rejected[0].reason == "too_many_matches"
    assert "max_matches=10" in out.rejected[0].detail
    out = apply_commands(plain(many), [Command(prefix="Wait, let", suffix="again.")], repeated="all",
                         max_freed_share=1.0)
    assert len(out.applied) == 40 and out.text == QUESTION + "<Del> " * 40


def test_the_round_share_still_refuses_a_round_whole() -> None:
    text = QUESTION + LOOP * 10
    out = apply_commands(plain(text), [LOOP_CMD], repeated="all", max_freed_share=0.3)
    assert out.applied == [] and out.refused and out.text == text and out.skipped == []
    assert [r.reason for r in out.rejected] == ["round_refused"]


def test_bad_settings_are_config_errors() -> None:
    ctx = plain(loop_text(1))
    with pytest.raises(ConfigError, match="repeated"):
        apply_commands(ctx, [], repeated="every")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_matches"):
        apply_commands(ctx, [], repeated="all", max_matches=0)


# -- the cleaner declares its mode ----------------------------------------------------------------------------


class Fixed(Cleaner):
    name = "fixed"

    def __init__(self, commands: list[Command], repeated: str | None = None) -> None:
        self.commands = commands
        if repeated is not None:
            self.repeated = repeated  # type: ignore[assignment]

    def propose(self, context: Context) -> Proposal:
        return Proposal(commands=list(self.commands), cleaner=self.name)


def test_free_memory_applies_with_the_cleaners_mode() -> None:
    text = loop_text(4)
    assert Cleaner.repeated == "reject" and HeuristicCleaner.repeated == "reject"
    kept = FreeMemory(cleaner=Fixed([LOOP_CMD]), counter="approx", protection=Protection(recent_chars=0))
    result = kept.clean_text(text, question=QUESTION)
    assert result.text == text and result.event.rejected[0]["reason"] == "ambiguous_prefix"
    cut = FreeMemory(cleaner=Fixed([LOOP_CMD], repeated="all"), counter="approx",
                     protection=Protection(recent_chars=0))
    result = cut.clean_text(text, question=QUESTION)
    assert "recompute" not in result.text and result.event.applied == 4


# -- properties, in every mode --------------------------------------------------------------------------------

MODES = st.sampled_from(["reject", "all", "first"])


@st.composite
def commands_in(draw, searched: Context):
    """Random commands, most starting in editable text of ``searched`` (what apply looks in): random anchors
    alone mostly land in protected text, and the modes differ only where a command applies."""
    text = searched.text
    editable = [r for r in searched.regions if r.editable and r.end > r.start]
    cmds = []
    for _ in range(draw(st.integers(0, 6))):
        if not text:
            break
        if editable and draw(st.integers(0, 3)):
            r = draw(st.sampled_from(editable))
            s = draw(st.integers(r.start, r.end - 1))
        else:
            s = draw(st.integers(0, len(text) - 1))
        e = draw(st.integers(s, min(len(text), s + 300)))
        a = draw(st.integers(1, 30))
        b = draw(st.integers(0, 30))
        cmds.append(Command(prefix=text[s:s + a], suffix=text[max(s, e - b):e]))
    return cmds
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(transcripts(), protections(), MODES, st.data())
def test_every_mode_keeps_the_invariants_on_transcripts(msgs, protection, mode, data):
    ctx = Context.from_messages(msgs, protection=protection)
    cmds = data.draw(commands_in(ctx) if data.draw(st.booleans()) else commands_for(ctx.text))
    share = data.draw(st.sampled_from([0.5, 1.0]))
    out = apply_commands(ctx, cmds, repeated=mode, max_freed_share=share)
    # every command is accounted for once: applied (possibly with skipped matches) or rejected
    assert len(out.rejected) + len({i for s in out.applied for i in s.command_indexes}) == len(cmds)
    assert {r.command_index for r in out.skipped} <= {i for s in out.applied for i in s.command_indexes}
    check_invariants(ctx, msgs, out)  # protected byte-identical, pairing, ids, exact restore
    again = apply_commands(Context.from_messages(msgs, protection=protection), cmds, repeated=mode,
                           max_freed_share=share)
    assert again.text == out.text and again.applied == out.applied and again.rejected == out.rejected


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=120).map(" ".join), MODES, st.data())
def test_every_mode_keeps_the_invariants_on_text(text, mode, data):
    ctx = Context.from_text(text, protection=Protection(recent_chars=data.draw(st.integers(0, 60))))
    cmds = data.draw(commands_in(ctx))
    out = apply_commands(ctx, cmds, repeated=mode, max_freed_share=1.0)
    for span in out.applied:
        assert all(r.editable for r in ctx.regions_in(span.start, span.end))  # every match in editable text
        assert text[span.start:span.end] == span.original
    protected = [(r.start, r.end) for r in ctx.regions if not r.editable]
    # protected text is byte-identical: each protected range survives, in order, in the pruned text
    at = 0
    for s, e in protected:
        found = out.text.find(text[s:e], at)
        assert found >= 0
        at = found + (e - s)
    for span in out.applied:  # each piece became one marker, where the span says
        assert out.text[span.pruned_start:span.pruned_start + len(span.marker)] == span.marker == DEFAULT_TEXT_MARKER
    assert out.text.count(DEFAULT_TEXT_MARKER) == len(out.applied)
    assert restore_text(out.text, out.applied) == text
    assert apply_commands(ctx, cmds, repeated=mode, max_freed_share=1.0).text == out.text  # deterministic


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=80).map(" ".join), st.data())
def test_all_removes_what_first_removes_and_more(text, data):
    ctx = Context.from_text(text, protection=Protection(recent_chars=0))
    cmds = data.draw(commands_in(ctx))[:1]
    first = apply_commands(ctx, cmds, repeated="first", max_freed_share=1.0)
    every = apply_commands(ctx, cmds, repeated="all", max_freed_share=1.0)
    unique = apply_commands(ctx, cmds, repeated="reject", max_freed_share=1.0)
    covered = [(s.start, s.end) for s in every.applied]
    for span in first.applied + unique.applied:
        # what "first" or "reject" removes, "all" removes too (unless it merged or skipped a tiny copy)
        assert any(s <= span.start and span.end <= e for s, e in covered) or every.rejected or every.skipped


@SETTINGS
@given(transcripts(), MODES, st.data())
def test_every_mode_through_what_the_model_was_shown(msgs, mode, data):
    # anchors copied from the rendered context (tags, notes and decoded arguments included) locate in it and
    # map back exactly: the same invariants hold
    ctx = Context.from_messages(msgs, protection=Protection(recent_turn=data.draw(st.booleans())))
    options = [None, RenderOptions(protected="elide"), RenderOptions(max_shown=40, head_chars=10, tail_chars=10)]
    shown = render_context(ctx, data.draw(st.sampled_from(options)))
    cmds = data.draw(commands_in(shown.index))
    out = apply_commands(ctx, cmds, repeated=mode, shown=shown, max_freed_share=1.0)
    assert len(out.rejected) + len({i for s in out.applied for i in s.command_indexes}) == len(cmds)
    check_invariants(ctx, msgs, out)
    for span in out.applied:
        assert ctx.text[span.start:span.end] == span.original and span.original in shown.text
