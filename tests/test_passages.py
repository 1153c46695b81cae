"""What archive search indexes (freemem.core.passages) and how it ranks (freemem.core.bm25)."""

from __future__ import annotations

from freemem.core.apply import span_ref
from freemem.core.archive import find_refs, flatten_fold, thread_folds
from freemem.core.bm25 import BM25Index
from freemem.core.passages import PIECE_CHARS, date_words, event_passages, snippet, terms


def _msg(role: str, content: str, mid: str, **extra: object) -> dict[str, object]:
    return {"format": "openai", "message": {"role": role, "content": content, "id": mid, **extra}}


def _fold(handle: str, messages: list[dict[str, object]], digest: str = "", merged: str | None = None) -> dict[str, object]:
    return {"handle": handle, "index": 1, "message_id": f"freemem-fold-{handle}", "messages": messages,
            "message_ids": [m["message"]["id"] for m in messages], "positions": list(range(1, 1 + len(messages))),
            "digest": digest, "merged": merged}


def test_terms_fold_case_possessives_plurals_ordinals_and_skip_function_words() -> None:
    assert terms("What did Evan's cars do on May 4th?") == ["evan", "car", "may", "4"]
    assert terms("parking PARKED parks stories glass") == ["park", "park", "park", "story", "glass"]
    assert terms("read_file src/app.py") == ["read_file", "src", "app", "py"]
    assert terms("the of and to") == []
    assert date_words("2023-05-04") == "2023-05-04 may 4" and date_words("yesterday") == "yesterday"


def test_event_passages_cover_utterances_tool_outputs_digests_and_spans() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.txt"}'}}
    long_output = "x " * PIECE_CHARS + "needle at the end"
    event = {"id": "e1", "created_at": 5.0,
             "rounds": [[{"original": "freed words here", "tokens": 3}]],
             "folds": [_fold("f00000001", [
                 _msg("user", "I moved to Lisbon", "u1", metadata={"date": "2023-04-27"}),
                 _msg("assistant", "", "a1", tool_calls=[call]),
                 _msg("tool", long_output, "t1", tool_call_id="c1"),
                 _msg("user", "[freemem: 3 earlier messages folded]", "freemem-fold-f00000000"),
             ], digest="- user: I moved to Lisbon")]}
    passages = event_passages(event)
    kinds = [(p.kind, p.ref) for p in passages]
    assert ("span", span_ref("freed words here")) in kinds and ("digest", "f00000001") in kinds
    assert ("message", "u1") in kinds and not any(ref in ("a1", "freemem-fold-f00000000") for _, ref in kinds)
    user = next(p for p in passages if p.ref == "u1")
    assert user.date == "2023-04-27" and user.fold == "f00000001" and "april 27" in user.indexed_text()
    pieces = [p for p in passages if p.ref == "t1"]
    assert len(pieces) >= 2 and all(p.call == 'read_file({"path": "a.txt"})' for p in pieces)
    assert "".join(p.text for p in pieces) == long_output and [p.piece for p in pieces] == list(range(len(pieces)))


def test_snippet_is_bounded_and_holds_the_match() -> None:
    text = "filler words " * 200 + "the zebra crossing is here " + "more filler " * 200
    cut = snippet(text, terms("zebra crossing"), 120)
    assert len(cut) <= 120 and "zebra crossing" in cut
    assert snippet("short", ["x"], 120) == "short"


def test_bm25_index_ranks_and_forgets() -> None:
    index: BM25Index[str] = BM25Index()
    index.add("a", terms("red Toyota Prius parked outside"))
    index.add("b", terms("the weather was red hot"))
    index.add("c", terms("Prius Prius Prius"))
    ranked = index.search(terms("red Prius"), 3)
    assert {doc for doc, _ in ranked} == {"a", "b", "c"} and ranked[0][0] in ("a", "c")
    assert all(s > 0 for _, s in ranked) and ranked == sorted(ranked, key=lambda x: -x[1])
    index.add("c", terms("blue sedan"))  # replaced
    assert [d for d, _ in index.search(terms("Prius"), 5)] == ["a"]
    index.remove("a")
    assert index.search(terms("Prius"), 5) == [] and len(index) == 2 and "a" not in index
    index.remove("missing")


def test_a_fold_handle_flattens_every_merged_fold_oldest_first() -> None:
    folds, previous = [], None
    for n in range(60):  # 60 folds, each taking the previous fold message in first
        handle = f"f{n:08x}"
        inner = [_msg("user", "[freemem: folded]", f"freemem-fold-{previous}")] if previous else []
        folds.append(_fold(handle, [*inner, _msg("user", f"message {n}", f"m{n}")], merged=previous))
        previous = handle
    events = [{"id": f"e{n}", "created_at": float(n), "folds": [f]} for n, f in enumerate(folds)]
    (text,) = find_refs(events, previous or "")
    assert text.startswith("[user #m0]\nmessage 0") and "[freemem: folded]" not in text
    assert [line for line in text.splitlines() if line.startswith("message")] == [f"message {n}" for n in range(60)]
    assert len(flatten_fold(folds[-1], thread_folds(events))) == 60
    # By the fold message's id too; a folded message alone by its id.
    assert find_refs(events, f"freemem-fold-{previous}") == [text]
    assert find_refs(events, "m7") == ["[user #m7]\nmessage 7"]
