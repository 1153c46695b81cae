"""Inspectable rounds (issue 13): every rejection says what was searched and why it failed; the ledger event
keeps the cleaner's raw answer (bounded) and the proposed / applied / rejected counts; a note says when the
protected text alone makes the budget unreachable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from freemem import Command, Context, FreeMemory, Protection, apply_commands
from freemem.config import Triggers
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.ledger import RAW_ANSWER_CHARS, RAW_STATE_CHARS, CleanEvent

TEXT = (
    "Question: what is 6 * 7?\n"
    "First try: 6 * 7 = 48. That looks wrong, let me redo it.\n"
    "Let me check: 6 * 7 = 42.\n"
    "Let me check: 6 * 7 = 42.\n"
    "Second try, slowly: six sevens are 7 + 7 + 7 + 7 + 7 + 7 = 42.\n"
    + "".join(f"Padding line {i} so the recency window leaves the lines above editable.\n" for i in range(80))
    + "\nThe answer is \\boxed{42}.\n"
)


def rejections(commands: list[Command]) -> dict[str, str]:
    out = apply_commands(Context.from_text(TEXT, question="Question: what is 6 * 7?"), commands)
    return {r.reason: r.detail for r in out.rejected}


def test_not_found_says_how_far_the_copy_matched() -> None:
    detail = rejections([Command(prefix="First try: 6 * 7 = 49.", suffix="redo it.")])["prefix_not_found"]
    assert "22-char prefix" in detail and "exactly or ignoring whitespace" in detail
    assert "its first 20 chars occur (at offset 25)" in detail  # "First try: 6 * 7 = 4" then 8 against 9
    assert "'8. That" in detail and "'9.'" in detail
    nothing = rejections([Command(prefix="zzz qqq", suffix="x")])["prefix_not_found"]
    assert "nowhere in the text" in nothing and "first" not in nothing


def test_ambiguous_names_the_places() -> None:
    detail = rejections([Command(prefix="Let me check: 6 * 7 = 42.", suffix="42.")])["ambiguous_prefix"]
    first = TEXT.find("Let me check")
    second = TEXT.find("Let me check", first + 1)
    assert f"2 times in editable text (at char {first}, char {second})" in detail
    assert "needs a prefix that occurs once" in detail


def test_suffix_not_found_names_the_suffix_and_where_the_prefix_was() -> None:
    detail = rejections([Command(prefix="First try", suffix="no such end")])["suffix_not_found"]
    assert "'no such end'" in detail and f"offset {TEXT.find('First try')}" in detail


anchor = st.text(alphabet="Let mchk:67*=42.\n ", min_size=0, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(anchor, anchor), max_size=6))
def test_every_rejection_has_a_detail(pairs: list[tuple[str, str]]) -> None:
    out = apply_commands(Context.from_text(TEXT, question="Question: what is 6 * 7?"),
                         [Command(prefix=p, suffix=s) for p, s in pairs])
    assert all(r.detail for r in out.rejected), [(r.reason, r.detail) for r in out.rejected]


class Scripted(Cleaner):
    name = "scripted"

    def __init__(self, commands: list[Command], raw: str) -> None:
        self.commands, self.raw = commands, raw

    def propose(self, context: Context) -> Proposal:
        return Proposal(commands=list(self.commands), cleaner=self.name, raw=self.raw)


def test_the_event_keeps_counts_details_and_the_bounded_raw_answer() -> None:
    commands = [Command(prefix="First try: 6 * 7 = 48.", suffix="redo it.\n"),  # applied
                Command(prefix="First try", suffix="redo"),  # overlaps the first: merged, still applied
                Command(prefix="Let me check", suffix="42.\n"),  # ambiguous
                Command(prefix="Third try", suffix="x")]  # not found
    raw = '{"commands": [...]}' + " " * 10_000
    memory = FreeMemory(Scripted(commands, raw), counter="approx",
                        triggers=Triggers(every_tokens=None, on_loop=False))
    event = memory.clean_text(TEXT, question="Question: what is 6 * 7?").event
    assert (event.proposed, event.applied_commands, event.applied, len(event.rejected)) == (4, 2, 1, 2)
    assert event.applied_share == 0.5
    assert all(r["detail"] for r in event.rejected)
    assert event.raw is not None and event.raw.startswith('{"commands"') and "more chars cut]" in event.raw
    assert len(event.raw) < RAW_ANSWER_CHARS + 40
    d = event.to_dict(spans=True)  # the archive's form
    assert (d["proposed"], d["applied_commands"]) == (4, 2) and d["raw"] == event.raw
    state = event.to_dict()  # graph state's summary: a shorter excerpt
    assert state["raw"].startswith('{"commands"') and len(state["raw"]) < RAW_STATE_CHARS + 40
    again = CleanEvent.from_dict(d)
    assert (again.proposed, again.applied_commands, again.raw) == (4, 2, event.raw)


def test_a_note_when_protected_text_alone_is_over_the_budget() -> None:
    system = "You are a careful agent. Rule: never guess. " * 60  # ~600 approx tokens, all protected
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi, what do you need?"}]
    event = FreeMemory(counter="approx", budget=200, triggers=Triggers(every_tokens=None)).clean(msgs).event
    assert event.tokens_after > 200
    assert event.note and "protected text alone is about" in event.note and "budget of 200" in event.note
    assert "system" in event.note
    # Reachable budget: no note.
    loose = FreeMemory(counter="approx", budget=5000, triggers=Triggers(every_tokens=None)).clean(msgs).event
    assert not (loose.note or "").count("protected text alone")
    # Protection loosened: the note goes, since the cleaner could now meet it.
    free = FreeMemory(counter="approx", budget=200, protection=Protection(system=False),
                      triggers=Triggers(every_tokens=None))
    assert "protected text alone" not in (free.clean(msgs).event.note or "")
