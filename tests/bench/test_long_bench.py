"""freemem bench long: the sessions it builds, the reference index, the reducers it applies, and the JSON of a
``--quick`` run on the synthetic sessions (structure and sanity, not figures that depend on folding)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage, ToolMessage, trim_messages
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from freemem.cli.main import main
from freemem.config import Triggers
from freemem.core.errors import ConfigError
from freemem.core.pairing import pairing_violations
from freemem.langgraph import LEDGER_MAX_EVENTS
from freemem.memory import FreeMemory
from freemem_bench import long as L
from freemem_bench import sessions as S
from freemem_bench._common import bench_counter
from freemem_bench.answers import ANSWER_INSTRUCTION, LocalAnswerer, chat_prompt, token_f1
from freemem_bench.transcripts import ReferenceIndex


def test_text_index_matches_reference_index_on_prefixes() -> None:
    rng = random.Random(7)
    for trial in range(150):
        alpha = "ab c" if trial % 2 else "abcdefgh ij/._"
        text = "".join(rng.choice(alpha) for _ in range(rng.randrange(0, 300)))
        # a small bitmap: many false "maybe"s, which must not change the result
        index = S.TextIndex(text + "\x00never indexed: " + text[::-1], bits=1 << 9)
        ref = ReferenceIndex()
        prev = 0
        for cut in [*sorted(rng.choices(range(len(text) + 1), k=3)), len(text)]:
            ref.extend(text[prev:cut])
            index.reveal(cut)
            prev = cut
            for _ in range(3):
                query = "".join(rng.choice(alpha) for _ in range(rng.randrange(0, 60)))
                if len(text) > 20 and rng.random() < 0.6:
                    at = rng.randrange(len(text) - 10)
                    query = query[:7] + text[at:at + rng.randrange(4, 40)] + query[7:]
                assert index.maximal_matches(query, 8) == ref.maximal_matches(query, 8), (text[:cut], query)


def test_text_index_rejects_another_min_len() -> None:
    index = S.TextIndex("some text here", min_len=8)
    with pytest.raises(ValueError):
        index.maximal_matches("some text", 5)


def test_tool_session_is_deterministic_bulky_and_quotes_earlier_results() -> None:
    a, b = S.tool_session(300, seed=3), S.tool_session(300, seed=3)
    assert [m.content for s in a.steps for m in s] == [m.content for s in b.steps for m in s]
    assert len(a.steps) == 300
    counter = bench_counter("o200k_base")
    results = [step[1] for step in a.steps]
    assert all(isinstance(r, ToolMessage) for r in results)
    mean_tokens = sum(counter.count(r.content) for r in results) / len(results)
    assert 250 <= mean_tokens <= 450
    call_ids = [step[0].tool_calls[0]["id"] for step in a.steps]
    assert len(set(call_ids)) == len(call_ids)
    assert all(step[1].tool_call_id == step[0].tool_calls[0]["id"] for step in a.steps)
    # Some calls repeat an earlier one exactly, with the same result.
    calls = [(s[0].tool_calls[0]["name"], json.dumps(s[0].tool_calls[0]["args"])) for s in a.steps]
    assert len(set(calls)) < len(calls)
    # The assistant's calls quote identifiers of earlier results (each at least 8 characters, the shortest
    # reference), some of them long ago; its text is a stock phrase of the system prompt.
    quoted_far = 0
    for i, step in enumerate(a.steps[50:], start=50):
        evidence = step[0].tool_calls[0]["args"].get("evidence", [])
        assert all(len(x) >= 8 and any(x in r.content for r in results[:i]) for x in evidence)
        assert step[0].content in a.head[0].content
        earlier_far = "\n".join(r.content for r in results[:i - 10])
        quoted_far += any(x in earlier_far and all(x not in r.content for r in results[i - 10:i]) for x in evidence)
    assert quoted_far > 5


def test_chat_session_states_facts_and_asks_about_them_later() -> None:
    session = S.chat_session(400, seed=1)
    assert len(session.steps) == 400
    assert all(isinstance(h, HumanMessage) and isinstance(a, AIMessage) for h, a in session.steps)
    counter = bench_counter("o200k_base")
    sizes = [counter.count(m.content) for step in session.steps for m in step]
    assert 8 <= sum(sizes) / len(sizes) <= 60
    asked = [a.content for h, a in session.steps if h.content.startswith(("Remind me", "What was my", "Which flight"))]
    assert asked
    # An answer is the fact as the user stated it, earlier; every other reply is too short to be a reference.
    stated = [h.content for h, _a in session.steps]
    for i, (h, a) in enumerate(session.steps):
        if len(a.content) >= 8:
            assert any(a.content.rstrip(".") in s for s in stated[:i]), a.content
        else:
            assert not h.content.startswith(("Remind me", "What was my", "Which flight", "What did I", "Do you"))


def _bank(tmp_path: Path) -> Path:
    folder = tmp_path / "memorybank_chat_en"
    folder.mkdir()
    bank = {
        "Ann": {"history": {
            "2023-04-27": [{"query": "Hello, I'm Ann.", "response": "Hello Ann!"},
                           {"query": "Which painters should I look at?",
                            "response": "Try Claude Monet and Berthe Morisot, both impressionists."}],
            "2023-05-02": [{"query": "I went to the museum and saw the \"Golden Age of Clocks\" exhibition.",
                            "response": "That exhibition sounds fascinating."}]}},
        "Bo": {"history": {"2023-04-28": [{"query": "I ran 5 kilometres in Riverside Park today.",
                                           "response": "Well done, Bo!"}]}},
    }
    (folder / "memory_bank_en.json").write_text(json.dumps(bank))
    (folder / "probing_questions_en.jsonl").write_text(
        json.dumps({"Ann": ["What painters did you recommend to me?",
                            "I mentioned on May 2nd that I went to the museum. What exhibition did I see?"]}) + "\n"
        + json.dumps({"Bo": ["Where did I run?"]}) + "\n")
    return folder


def test_memorybank_session_and_probe_keys(tmp_path: Path) -> None:
    session = S.memorybank_session(_bank(tmp_path))
    assert len(session.steps) == 4  # users one after another, every day in order
    assert session.steps[0][0].content == "Hello, I'm Ann." and session.steps[3][0].content.startswith("I ran")
    by_question = {p.question: p for p in session.probes}
    painters = by_question["What painters did you recommend to me?"]
    assert "Claude Monet" in painters.keys and "Berthe Morisot" in painters.keys
    museum = by_question["I mentioned on May 2nd that I went to the museum. What exhibition did I see?"]
    assert museum.evidence_date == "2023-05-02" and "Golden Age of Clocks" in museum.keys
    assert "Riverside Park" in by_question["Where did I run?"].keys
    assert all(p.key_kind == "names" for p in session.probes)


def _openhands(tmp_path: Path) -> Path:
    lines = []
    for t in range(3):
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": "You are OpenHands."},
            {"role": "user", "content": [{"type": "text", "text": f"Fix issue {t} in repo_{t}."}]},
        ]
        for k in range(2):
            msgs.append({"role": "assistant", "content": f"Looking at file_{k}.py", "tool_calls": [
                {"index": 1, "id": "toolu_same", "type": "function",
                 "function": {"name": "execute_bash", "arguments": json.dumps({"command": f"cat file_{k}.py"})}}]})
            msgs.append({"role": "tool", "tool_call_id": "toolu_same", "name": "execute_bash",
                         "content": f"print({t}, {k})"})
        msgs.append({"role": "assistant", "content": "Done.", "tool_calls": [  # OpenHands ends on an unanswered call
            {"id": "toolu_end", "type": "function", "function": {"name": "finish", "arguments": "{}"}}]})
        lines.append(json.dumps({"instance_id": f"repo__{t}", "messages": msgs}))
    path = tmp_path / "openhands_swebench_verified_claude35" / "trajectories.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def test_openhands_session_concatenates_with_unique_call_ids(tmp_path: Path) -> None:
    session = S.openhands_session(_openhands(tmp_path))
    everything = [*session.head, *(m for s in session.steps for m in s)]
    assert sum(1 for m in everything if m.type == "system") == 1
    assert [m.type for m in session.head] == ["system", "human"]
    assert all(step[0].type == "ai" for step in session.steps)
    call_ids = [c["id"] for m in everything if m.type == "ai" for c in m.tool_calls]
    assert len(call_ids) == 9 and len(set(call_ids)) == 9
    results = [m.tool_call_id for m in everything if m.type == "tool"]
    assert results == call_ids  # every call answered in order: the finish calls get a "run ended" result
    assert pairing_violations(everything) == []
    assert sum("no result was recorded" in m.content for m in everything if m.type == "tool") == 3
    assert len({m.id for m in everything}) == len(everything) == 1 + 3 * 7


def test_apply_update_uses_the_state_reducers() -> None:
    state: dict[str, Any] = {"messages": [], "freemem_ledger": [], "freemem_tokens_at_last_clean": 0}
    L.apply_update(state, {"messages": [SystemMessage("s", id="s"), HumanMessage("h", id="h"),
                                        AIMessage("old", id="a")]})
    L.apply_update(state, {"messages": [AIMessage("edited", id="a")],
                           "freemem_ledger": [{"id": "e1"}], "freemem_tokens_at_last_clean": 42})
    assert [m.content for m in state["messages"]] == ["s", "h", "edited"]  # replaced in place by id
    assert state["freemem_tokens_at_last_clean"] == 42
    L.apply_update(state, {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), SystemMessage("s", id="s"),
                                        AIMessage("fold", id="f")], "freemem_tokens_at_last_clean": None})
    assert [m.id for m in state["messages"]] == ["s", "f"]
    assert state["freemem_tokens_at_last_clean"] == 42  # None leaves the last value
    L.apply_update(state, {"messages": [RemoveMessage(id="f")]})
    assert [m.id for m in state["messages"]] == ["s"]
    for k in range(LEDGER_MAX_EVENTS + 5):
        L.apply_update(state, {"freemem_ledger": [{"id": k}]})
    assert len(state["freemem_ledger"]) == LEDGER_MAX_EVENTS and state["freemem_ledger"][-1] == {"id": 104}


def test_fold_count_reads_folds_or_folded() -> None:
    assert L.fold_count({"applied": 3}) == 0
    assert L.fold_count({"folds": []}) == 0
    assert L.fold_count({"folds": [{"handle": "f1"}, {"handle": "f2"}]}) == 2
    assert L.fold_count({"folded": True}) == 1
    assert L.fold_count({"folds": 3}) == 3


def test_trim_input_gives_trim_messages_the_same_output_as_the_whole_history() -> None:
    session = S.tool_session(120, seed=5)
    measure = FreeMemory(counter=bench_counter("o200k_base"), triggers=Triggers(every_tokens=None, on_loop=False)).count_messages
    full = [*session.head, *(m for s in session.steps for m in s)]
    prefix, running = [], 0
    for m in full:
        running += measure([m])
        prefix.append(running)
    budget = 3000
    short = L.trim_input(full, prefix, budget)
    assert len(short) < len(full) and short[:2] == full[:2]

    def trim(msgs: list[Any]) -> list[Any]:
        return trim_messages(msgs, max_tokens=budget, token_counter=measure, strategy="last",
                             start_on=("human", "ai"), include_system=True)

    assert [m.id for m in trim(short)] == [m.id for m in trim(full)]
    assert L.trim_input(full[:10], prefix[:10], budget) == full[:10]  # short histories go whole


def _run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "long.json"
    assert main(["bench", "long", "--quiet", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_quick_run_on_the_synthetic_sessions(tmp_path: Path) -> None:
    png = tmp_path / "long.png"
    result = _run(tmp_path, "--quick", "--sessions", "tools,chat", "--plot", str(png))
    assert result["benchmark"] == "long" and result["quick"] is True
    assert png.stat().st_size > 0
    by_name = {r["session"]: r for r in result["sessions"]}
    assert set(by_name) == {"tools", "chat"}
    assert by_name["tools"]["budget"] == 16_000 and by_name["chat"]["budget"] == 4_000
    for r in result["sessions"]:
        assert r["stopped"] is None and r["steps"] == r["steps_planned"] == 400
        assert len(r["tokens_per_step"]) == len(r["ms_per_step"]) == r["steps"]
        assert 0 <= r["steps_over_budget"] <= r["steps"]
        assert r["steps_over_budget"] == sum(1 for t in r["tokens_per_step"] if t > r["budget"])
        assert r["peak_tokens"] == max(r["tokens_per_step"]) >= r["final_tokens"] == r["tokens_per_step"][-1] > 0
        assert r["final_messages"] >= 2 and r["messages_replayed"] >= 801
        assert r["cleans"] >= 1 and 0 <= r["folds"]
        t = r["time"]
        assert t["early_steps"] == 200 and t["late_window"] == [300, 400] and t["late_steps"] == 100
        for key in ("mean_ms", "mean_ms_early", "mean_ms_late", "p99_ms", "late_over_early", "median_ms_early",
                    "median_ms_late", "median_late_over_early"):
            assert isinstance(t[key], float) and t[key] > 0, key
        assert t["flat"] == (t["late_over_early"] <= 1.5)
        assert 0 < t["freemem_s"] <= t["wall_s"]
        assert set(r["rss_mb"]) == {"before", "after", "growth"} and r["rss_mb"]["before"] > 0
        ret = r["retention"]
        assert ret["samples"] >= 10 and ret["references"] > 0
        for who in ("freemem", "trim"):
            assert 0.0 <= ret[who] <= 1.0
            assert ret[f"{who}_kept"] == sum(s[who] for s in ret["per_sample"]) <= ret["references"]
        assert r["probes"] is None
    assert "| tools @16,000 |" in result["table"]


def test_data_sessions_run_from_a_data_folder_and_missing_ones_are_skipped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _bank(data)
    result = _run(tmp_path, "--sessions", "memorybank,openhands", "--data", str(data), "--samples", "5")
    assert [r["session"] for r in result["sessions"]] == ["memorybank"]
    assert len(result["skipped"]) == 1 and result["skipped"][0].startswith("openhands: skipped")
    (mb,) = result["sessions"]
    assert mb["steps"] == 4 and mb["budget"] == 4_000
    probes = mb["probes"]
    assert probes["questions"] == 3 and len(probes["per_question"]) == 3
    # The whole bank fits the budget here: every key string is still there, for both.
    assert probes["freemem_all_kept"] == probes["trim_all_kept"] == 3
    assert main(["bench", "long", "--quiet", "--sessions", "nope"]) == 1
    assert main(["bench", "long", "--quiet", "--data", str(tmp_path / "absent")]) == 1


_PLACES, _SIDES, _FRIENDS = ("Amber", "Birch", "Cedar"), ("North", "South", "East", "West", "Upper", "Lower"), "ABC"


def _long_bank(tmp_path: Path, users: int = 3, days: int = 6) -> Path:
    """MemoryBank-shaped data with enough text per user that a small budget folds: each day one fact with a
    name, and small talk."""
    folder = tmp_path / "memorybank_chat_en"
    folder.mkdir()
    bank: dict[str, Any] = {}
    questions: list[str] = []
    for u in range(users):
        name = f"User{u}" if u else " Spacey "  # MemoryBank has names with stray spaces (" Jason ")
        history = {}
        for d in range(days):
            history[f"2023-04-{27 + d:02d}" if d < 4 else f"2023-05-{d - 3:02d}"] = [
                {"query": f"Today I visited the {_PLACES[u]} {_SIDES[d]} Gallery with my friend {_FRIENDS[u]}{d}.",
                 "response": "That sounds lovely. " + "Museums are a wonderful way to spend a day. " * 6},
                {"query": "The weather was fine and I walked a lot. " * 4,
                 "response": "Walking is good for you. " * 8}]
        bank[name] = {"history": history}
        questions.append(json.dumps({name.strip(): [f"On May 1st, which gallery did I visit with {_FRIENDS[u]}4?"]}))
    (folder / "memory_bank_en.json").write_text(json.dumps(bank))
    (folder / "probing_questions_en.jsonl").write_text("\n".join(questions) + "\n")
    return folder


def test_memorybank_chats_are_dated_shifted_and_split(tmp_path: Path) -> None:
    folder = _long_bank(tmp_path)
    (chat,) = S.memorybank_chats(folder, users_per_chat=3, split="all")
    assert chat.name == "memorybank[Spacey+User1+User2]" and len(chat.steps) == 3 * 6 * 2
    dates = [step[0].additional_kwargs["date"] for step in chat.steps]
    assert dates == sorted(dates) and dates[0] == "2023-04-27" and dates[-1] == "2023-05-14"  # 18 days, in order
    assert all(step[1].additional_kwargs["date"] == step[0].additional_kwargs["date"] for step in chat.steps)
    # Every user keeps their question (the one with stray spaces too), its named day shifted with the user's days.
    assert [p.question for p in chat.probes] == ["On May 1st, which gallery did I visit with A4?",
                                                 "On May 7th, which gallery did I visit with B4?",
                                                 "On May 13th, which gallery did I visit with C4?"]
    assert [p.evidence_date for p in chat.probes] == ["2023-05-01", "2023-05-07", "2023-05-13"]
    assert chat.probes[1].keys == ["Birch Upper Gallery"] and chat.probes[1].evidence_ids == ["mb1-8-q", "mb1-8-r"]
    # The split: the first MEMORYBANK_TUNE_USERS users tune, the others are held out (none here).
    assert len(S.memorybank_chats(folder, users_per_chat=2, split="tune")) == 2
    assert S.memorybank_chats(folder, split="held-out") == []
    with pytest.raises(ConfigError):
        S.memorybank_chats(folder, split="nope")
    with pytest.raises(ConfigError):
        S.memorybank_chats(folder, users_per_chat=0)


def test_memorybank_chats_report_gold_present_reachable_and_digest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _long_bank(data)
    result = _run(tmp_path, "--sessions", "memorybank-chats", "--data", str(data), "--split", "all",
                  "--users-per-chat", "3", "--chat-budget", "600,100000", "--samples", "5")
    small, whole = result["sessions"]
    assert small["budget"] == 600 and whole["budget"] == 100_000
    assert small["steps_over_budget"] == 0 and small["folds"] >= 1
    p = small["probes"]
    assert p["questions"] == 3 and p["none_all_kept"] == 3
    assert 0 <= p["freemem_all_kept"] <= p["freemem_reachable"] <= 3
    # What left the context, one recall(query=question) finds (the answering turn among its hits).
    assert p["freemem_reachable"] == 3 and p["freemem_all_kept"] < 3
    assert all(r["recall_evidence"] for r in p["per_question"] if not r["freemem_all_kept"])
    assert 0 < p["digest_tokens"] <= 600 and p["recall"]["k"] == L.RECALL_K
    # Unpruned, everything is in context and nothing was folded.
    w = whole["probes"]
    assert w["freemem_all_kept"] == w["trim_all_kept"] == w["none_all_kept"] == 3 and w["digest_tokens"] == 0
    assert "gold present freemem" in result["qa_table"] and result["f1_table"] is None
    assert main(["bench", "long", "--quiet", "--chat-budget", "4000,x"]) == 1
    assert main(["bench", "long", "--quiet", "--chat-budget", "0"]) == 1


def test_token_f1_and_answer_prompt() -> None:
    assert token_f1("The Little Prince.", "the little prince") == 1.0
    assert token_f1("Leonardo da Vinci and Raphael", "Leonardo Vinci Michelangelo Raphael") == pytest.approx(
        2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert token_f1("", "x") == token_f1("unknown", "Paris") == 0.0
    prompt = chat_prompt([SystemMessage("be kind"), HumanMessage("I saw Oslo."), AIMessage("Nice!")], "Where?")
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[-1]["content"] == f"Where?\n{ANSWER_INSTRUCTION}"
    # No way out offered: with 'say "unknown"' a small model refused from every context (docs/chat.md).
    assert "unknown" not in ANSWER_INSTRUCTION.lower()


def test_answer_model_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalAnswerer(tmp_path / "absent.gguf")
    assert main(["bench", "long", "--quiet", "--sessions", "chat", "--answer-model",
                 str(tmp_path / "absent.gguf")]) == 1


def test_a_real_llama_cpp_model_answers_from_each_policy(tmp_path: Path) -> None:
    """--answer-model end to end on llama.cpp: the tiny random-weight Qwen3 GGUF (real tokenizer and chat
    template; its answers are noise, so this checks the wiring and the figures' shape, not their values)."""
    pytest.importorskip("gguf", reason="the gguf package is needed to write the tiny test model")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from tests.support.tiny_gguf import write_tiny_model

    model = write_tiny_model(tmp_path / "gguf", seed=0).model
    data = tmp_path / "data"
    data.mkdir()
    _long_bank(data)
    result = _run(tmp_path, "--sessions", "memorybank-chats", "--data", str(data), "--split", "all",
                  "--users-per-chat", "3", "--chat-budget", "600", "--samples", "5", "--answer-model", str(model),
                  "--answer-threads", "1", "--answer-ctx", "4096", "--answer-questions", "2",
                  "--answer-log", str(tmp_path / "answers.jsonl"))
    answers = result["sessions"][0]["probes"]["answers"]
    assert answers["questions"] == 2 and set(answers["f1"]) == set(L.ANSWER_POLICIES)
    assert all(0.0 <= answers["f1"][p] <= 1.0 for p in L.ANSWER_POLICIES)
    rows = result["sessions"][0]["probes"]["per_question"]
    assert all(set(r["answers"]) == set(L.ANSWER_POLICIES) for r in rows[:2]) and "answers" not in rows[2]
    assert result["answer_model"]["instruction"] == ANSWER_INSTRUCTION
    assert result["answer_model"]["calls"] == 6 and "F1 freemem" in result["f1_table"]
    logged = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [e["label"].rsplit(" ", 1)[1] for e in logged] == ["freemem"] * 2 + ["trim"] * 2 + ["none"] * 2
    assert [e["answer"] for e in logged[:2]] == [r["answers"]["freemem"]["answer"] for r in rows[:2]]


class _Echo:
    """An answer model that answers with the last words of the context it reads (which policy's context each
    answer came from is in the answer): the wiring of --answer-policies without a model file."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    def answer(self, context: Any, question: str, *, label: str = "") -> str:
        assert label.endswith((" freemem", " trim", " none"))
        self.asked.append((len(context), question))
        return chat_prompt(context, question)[-2]["content"][-40:]


def test_answer_policies_choose_the_contexts_the_model_reads(tmp_path: Path) -> None:
    _long_bank(tmp_path)
    chat = L.memorybank_chats(tmp_path / "memorybank_chat_en", users_per_chat=3, split="all")[0]
    echo = _Echo()
    result = L.replay(chat, budget=600, counter="o200k_base", samples=5, max_seconds=None, answerer=echo,
                      answer_questions=2, answer_policies=("none", "freemem"))
    answers = result["probes"]["answers"]
    # In ANSWER_POLICIES order whatever the order given; trim is not asked at all.
    assert answers["policies"] == ["freemem", "none"] and set(answers["f1"]) == {"freemem", "none"}
    assert len(echo.asked) == 4 and [q for _n, q in echo.asked] == [p.question for p in chat.probes[:2]] * 2
    assert echo.asked[0][0] < echo.asked[2][0]  # freemem's context first, shorter than the unpruned one
    rows = result["probes"]["per_question"]
    assert set(rows[0]["answers"]) == {"freemem", "none"} and "answers" not in rows[2]
    table = L.f1_rows([result, result])
    assert table[0][3] == "–" and table[-1][0].startswith("all 2") and table[-1][3] == "–"
    assert table[-1][2] == table[0][2] and table[-1][4] == table[0][4]


def test_answer_policies_must_be_known() -> None:
    assert L._answer_policies("trim, freemem") == ["freemem", "trim"]
    for bad in ("", "freemem,summary", ","):
        with pytest.raises(ConfigError):
            L._answer_policies(bad)
    assert main(["bench", "long", "--quiet", "--sessions", "chat", "--answer-policies", "gist"]) == 1
