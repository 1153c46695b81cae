"""The extractive digest (freemem.core.digest): specifics first, echoes and small talk last, within the cap."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from freemem.core.digest import extractive_digest, specifics
from freemem.core.views import message_views
from freemem.tokens import get_counter

COUNTER = get_counter("approx")
HEADER = "[freemem: 9 earlier messages folded; fold f0000000, kept in freemem's archive]"


def _digest(folded: list[dict[str, Any]], later: list[dict[str, Any]] | None = None, cap: int = 400) -> str:
    text, tokens = extractive_digest(message_views(folded), message_views(later or []), header=HEADER,
                                     counter=COUNTER, cap_tokens=cap)
    assert tokens == COUNTER.count(text) and tokens <= cap
    assert text.split("\n", 1)[0] == HEADER
    return text


def test_specifics_are_names_numbers_codes_paths_and_quotes() -> None:
    assert specifics("I'm flying to Lisbon with SK2113 on June 13.") == {"lisbon", "sk2113", "june", "13"}
    assert specifics("Open src/app/main.py and fix it") == {"src/app/main.py"}
    assert specifics('My favourite book is "the long walk" now') == {"the", "long", "walk"}
    assert specifics("Went for a short run before breakfast, about twenty minutes.") == set()
    # A capital that only starts the sentence is not a name; single digits are not specific.
    assert specifics("Nice, I ran 5 km.") == set()


def test_stated_facts_stay_and_small_talk_goes_first() -> None:
    folded = []
    for k in range(30):
        folded.append({"role": "user", "content": f"Went for a short run before breakfast, about twenty minutes. "
                                                  f"My locker code is {1000 + k}-{k:03d}.", "id": f"u{k}"})
        folded.append({"role": "assistant", "content": "Nice! Sounds like a good start to the day.", "id": f"a{k}"})
    text = _digest(folded, cap=200)
    lines = [line for line in text.split("\n")[1:] if line.startswith("- user: ")]
    assert len(lines) >= 10 and all(line.startswith("- user: My locker code is") for line in lines)
    assert "short run" not in text
    # Newest facts stay longest, in conversation order.
    codes = [line.split("is ")[1] for line in lines]
    assert codes[-1] == "1029-029." and codes == sorted(codes)


def test_an_answer_that_repeats_a_stated_fact_is_left_out() -> None:
    folded = [
        {"role": "user", "content": "I adopted a ferret last week and named it Veri Zuelve.", "id": "u1"},
        {"role": "user", "content": "What did I name my ferret?", "id": "u2"},
        {"role": "assistant", "content": "Veri Zuelve.", "id": "a2"},
    ]
    later = [{"role": "user", "content": "Is Zuelve a good name?", "id": "u3"}]
    text = _digest(folded, later)
    assert "named it Veri Zuelve." in text
    assert "- assistant: Veri Zuelve." not in text


def test_what_the_later_conversation_uses_ranks_first() -> None:
    folded = [{"role": "user", "content": f"Order {k}: shipped to Depot{k} with tracking TRK-{k:05d}.",
               "id": f"u{k}"} for k in range(40)]
    later = [{"role": "assistant", "content": "Checking TRK-00003 now.", "id": "a"}]
    text = _digest(folded, later, cap=70)
    assert "TRK-00003" in text
    assert "TRK-00039" in text  # then the newest


def test_tool_calls_and_used_tool_lines() -> None:
    folded = [
        {"role": "assistant", "content": "", "id": "a1", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "read_log", "arguments": json.dumps({"path": "/srv/app/err.log"})}}]},
        {"role": "tool", "tool_call_id": "c1", "id": "t1",
         "content": "12:00 ok\n12:01 worker-7 failed req-0042-9 timeout\n12:02 ok"},
    ]
    later = [{"role": "assistant", "content": "req-0042-9 timed out; retrying.", "id": "a2"}]
    text = _digest(folded, later)
    assert "- called read_log(path=/srv/app/err.log)" in text
    assert "  read_log said: 12:01 worker-7 failed req-0042-9 timeout" in text
    assert "12:00 ok" not in text


def test_a_merged_digest_keeps_its_facts_on_equal_terms() -> None:
    old = [{"role": "user", "content": "My gym locker code is 4300-312.", "id": "u0"},
           {"role": "user", "content": "Went for a walk today.", "id": "u1"}]
    first = _digest(old)
    fold_msg = {"role": "user", "content": first, "id": "freemem-fold-f0000000",
                "metadata": {"freemem_fold": {"handle": "f0000000", "messages": 2}}}
    new = [fold_msg] + [{"role": "user", "content": "Went for a short run before breakfast.", "id": f"n{k}"}
                        for k in range(20)]
    text = _digest(new, cap=60)
    assert "- user: My gym locker code is 4300-312." in text
    assert text.count(HEADER) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]),
                          st.text(alphabet=st.characters(codec="utf-8"), max_size=300)), max_size=12),
       st.integers(min_value=16, max_value=300))
def test_digest_is_bounded_and_extractive(turns: list[tuple[str, str]], cap: int) -> None:
    folded = [{"role": role, "content": text, "id": f"m{k}"} for k, (role, text) in enumerate(turns)]
    text = _digest(folded, cap=max(cap, COUNTER.count(HEADER)))
    source = " ".join(" ".join(t.split()) for _r, t in turns)
    for line in text.split("\n")[1:]:
        body = line.split(": ", 1)[1]
        # "…" marks a cut; the text may hold "…" itself, so each side of one is checked on its own
        for fragment in body.split("…"):
            for piece in fragment.split(" "):
                assert piece in source


def test_plain_statements_about_oneself_are_facts_and_filler_goes() -> None:
    folded = []
    for k in range(12):
        folded.append({"role": "user", "content": "Okay, thank you. The weather was nice.", "id": f"s{k}"})
        folded.append({"role": "assistant", "content": "You're welcome, happy to help any time.", "id": f"r{k}"})
    folded.insert(3, {"role": "user", "content": "Haha, I really enjoy playing badminton, running and swimming.",
                      "id": "pref"})
    text = _digest(folded, cap=40)
    assert "- user: I really enjoy playing badminton, running and swimming." in text  # "Haha, " left out
    assert "weather" not in text and "welcome" not in text


def test_a_fact_is_cut_to_the_clauses_that_hold_it() -> None:
    sentence = ('Recently, I have been reading a book called "To Live", which is very touching, and it made me '
                "understand the value of life.")
    text = _digest([{"role": "user", "content": sentence, "id": "u"}])
    # The clause before the fact's ("Recently,") says what it is about; the clauses after hold nothing.
    assert text.split("\n")[1] == '- user: Recently, I have been reading a book called "To Live"'



def test_dated_messages_give_day_lines_that_a_merged_digest_keeps() -> None:
    folded = [{"role": "user", "content": "I visited the Green Meadow Park.", "id": "u1",
               "metadata": {"date": "2023-04-28"}},
              {"role": "user", "content": "I bought a Yamaha guitar.", "id": "u2", "created_at": "2023-05-02T10:00:00"},
              {"role": "user", "content": "My cousin Lena Ortiz called.", "id": "u3"}]
    first = _digest(folded)
    assert first.split("\n")[1:] == ["[2023-04-28]", "- user: I visited the Green Meadow Park.", "[2023-05-02]",
                                     "- user: I bought a Yamaha guitar.", "- user: My cousin Lena Ortiz called."]
    fold_msg = {"role": "user", "content": first, "id": "freemem-fold-f0000000",
                "metadata": {"freemem_fold": {"handle": "f0000000", "messages": 3}}}
    later = {"role": "user", "content": "I ran the Oslo Marathon.", "id": "u4", "metadata": {"date": "2023-05-06"}}
    again = _digest([fold_msg, later])
    assert again.split("\n")[1:] == ["[2023-04-28]", "- user: I visited the Green Meadow Park.", "[2023-05-02]",
                                     "- user: I bought a Yamaha guitar.", "- user: My cousin Lena Ortiz called.",
                                     "[2023-05-06]", "- user: I ran the Oslo Marathon."]
