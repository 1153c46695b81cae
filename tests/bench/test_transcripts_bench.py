"""freemem bench transcripts: loaders, reference strings and the replay's figures, on tiny generated inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from freemem.core.errors import ConfigError, FormatError
from freemem_bench import transcripts as T
from freemem_bench._common import bench_counter, markdown_table, percentile


def _trajectory(n_tools: int = 8, lines: int = 60) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent. Use the tools."},
        {"role": "user", "content": "Fix the bug in module_alpha/parser.py please."},
    ]
    for i in range(n_tools):
        body = "\n".join(f"line {j} of file_{i}.py: value_{i}_{j} = compute_{j}(x)" for j in range(lines))
        msgs.append({"role": "assistant", "content": f"Reading file_{i}.py next.", "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/file_{i}.py"})}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": body})
    msgs.append({"role": "assistant", "content": "The fix uses value_3_7 = compute_7(x) from src/file_3.py."})
    return msgs


def test_maximal_matches_are_maximal_and_long_enough() -> None:
    index = T.ReferenceIndex()
    index.extend("the path is src/module/parser.py and the id is 12345")
    found = index.maximal_matches("open src/module/parser.py now", 8)
    assert found == {" src/module/parser.py "}
    assert index.maximal_matches("nothing shared", 8) == set()


def test_reference_strings_skip_system_text_and_punctuation() -> None:
    index = T.ReferenceIndex()
    system = "You are a helpful coding agent."
    index.extend(system + "\x00" + "call compute_total_amount(x) ........")
    msg = {"role": "assistant", "content": "You are a helpful coding agent. I call compute_total_amount(x) ........"}
    refs = T.reference_strings(index, msg, system)
    assert any("compute_total_amount" in r for r in refs)
    assert not any(r.strip(". ") == "" for r in refs)
    assert all(r not in system for r in refs)


def test_message_pieces_decode_tool_arguments() -> None:
    msg = {"role": "assistant", "content": "ok", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "edit", "arguments": '{"path": "a/b.py", "line": 12}'}}]}
    assert T.message_pieces(msg) == ["ok", "a/b.py", "12"]


def test_loader_reads_openhands_jsonl_and_tau_json(tmp_path: Path) -> None:
    msgs = _trajectory(2, 5)
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"instance_id": f"x-{i}", "messages": msgs}) for i in range(3)) + "\n")
    tau = tmp_path / "tau.json"
    tau.write_text(json.dumps([{"task_id": 7, "reward": 1.0, "traj": msgs}]))
    assert len(T.load_trajectories(jsonl)) == 3
    assert len(T.load_trajectories(jsonl, limit=2)) == 2
    (only,) = T.load_trajectories(tau)
    assert only.messages == msgs
    assert len(T.load_trajectories(tmp_path)) == 4  # a folder: every file of those forms
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": "no messages here"}) + "\n")
    with pytest.raises((ConfigError, FormatError)):  # one clear error, never a traceback from the CLI
        T.load_trajectories(tmp_path / "empty.jsonl")


def test_replay_figures_on_a_small_budget() -> None:
    counter = bench_counter("approx")
    budget = 2000  # over two tool outputs; the newest one (protected) alone fits
    traj = T.Trajectory("tiny", "generated", _trajectory())
    names = ["freemem", "clear_tool_uses", "trim", "none"]
    policies = T.build_policies(names, budget=budget, counter=counter, cleaner=None, every=None)
    result = T.replay(traj, policies, budget=budget, counter=counter)
    assert result["turns"] == 9
    runs = result["policies"]
    assert runs["none"]["tokens"] == runs["none"]["unpruned"]
    assert runs["none"]["kept"] == runs["none"]["refs"]
    assert max(runs["none"]["tokens"]) > budget
    for name in ("freemem", "trim"):
        assert max(runs[name]["tokens"]) <= budget, name
    for name in names:
        assert sum(runs[name]["pairing"]) == 0, name
    # the last answer quotes a line of an old tool output: references exist and freemem keeps some
    assert runs["none"]["refs"][-1] > 0
    summary = T.summarize([result], names, budget)
    assert summary["none"]["freed_mean"] == 0
    assert summary["freemem"]["freed_mean"] > 0
    assert summary["freemem"]["turns_over_budget"] == 0
    assert 0 <= summary["clear_tool_uses"]["retention"] <= 1
    rows = T.table_rows(summary)
    assert [r[0] for r in rows] == names


def test_stateful_freemem_appends_to_its_pruned_state() -> None:
    counter = bench_counter("approx")
    (policy,) = T.build_policies(["freemem"], budget=1200, counter=counter, cleaner=None, every=None)
    msgs = _trajectory()
    history = msgs[:12]
    first = policy.prune(history, [])
    assert len(first) <= len(history)  # edited in place, or the oldest units folded
    second = policy.prune(msgs[:14], [])
    assert second[: len(first)] == policy.state[: len(first)]
    assert second[-2:] == msgs[12:14]  # new messages arrive as recorded


def test_unknown_policy_and_helpers() -> None:
    with pytest.raises(ConfigError):
        T.build_policies(["nope"], budget=10, counter=bench_counter("approx"), cleaner=None, every=None)
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert markdown_table(["a", "b"], [["x", 1.5]]).splitlines()[2] == "| x | 1.500 |"


def test_cache_priced_input_per_policy() -> None:
    from freemem.core.prompt_cache import get_price_model

    counter = bench_counter("approx")
    budget = 2000
    traj = T.Trajectory("tiny", "generated", _trajectory())
    names = ["freemem", "trim", "none"]
    prices = [get_price_model("anthropic"), get_price_model("openai")]
    policies = T.build_policies(names, budget=budget, counter=counter, cleaner=None, every=None)
    result = T.replay(traj, policies, budget=budget, counter=counter, prices=prices)
    none = result["policies"]["none"]
    # no pruning only appends: each request caches all of the previous one
    assert none["cached"]["anthropic"][1:] == none["tokens"][:-1]
    summary = T.summarize([result], names, budget, prices)
    assert summary["none"]["cache"]["anthropic"]["cost_vs_none"] == 1.0
    assert summary["none"]["prefill_recomputed_vs_none"] == 1.0
    assert summary["none"]["prefill_recomputed"] == sum(none["tokens"]) - sum(none["cached"]["anthropic"])
    # trim drops the oldest messages on every turn over budget: the prefix after the system prompt changes
    trim = summary["trim"]["cache"]["anthropic"]
    assert trim["hit_rate"] < summary["none"]["cache"]["anthropic"]["hit_rate"]
    for name in names:
        figures = summary[name]["cache"]["anthropic"]
        assert figures["cost"] > 0 and 0 <= figures["hit_rate"] <= 1
    columns = T.table_columns(prices)
    rows = T.table_rows(summary, prices)
    assert all(len(r) == len(columns) for r in rows)
    assert "input cost ×none (anthropic)" in columns and rows[-1][columns.index("input cost ×none (openai)")] == "1.00×"
    assert len(T.cumulative_cost([result], "freemem", prices[0])) == result["turns"]


_TOOLS = [{"type": "function", "function": {
    "name": "read_file", "description": "Read a file of the repository. " * 20,
    "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "The path."}},
                   "required": ["path"]}}}]


def test_recorded_tool_definitions_are_counted_in_every_request(tmp_path: Path) -> None:
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text(json.dumps({"instance_id": "x", "tools": _TOOLS, "messages": _trajectory()}) + "\n")
    (traj,) = T.load_trajectories(jsonl)
    assert traj.tools == _TOOLS
    counter = bench_counter("approx")
    budget = 2000
    names = ["freemem", "clear_tool_uses", "trim", "none"]
    plain = T.replay(traj, T.build_policies(names, budget=budget, counter=counter, cleaner=None, every=None),
                     budget=budget, counter=counter)
    policies = T.build_policies(names, budget=budget, counter=counter, cleaner=None, every=None)
    counted = T.replay(traj, policies, budget=budget, counter=counter, count_tools=True)
    from freemem.langgraph.request import request_tokens

    fixed = request_tokens(counter, tools=_TOOLS)
    assert fixed > 150
    none_plain, none_counted = plain["policies"]["none"]["tokens"], counted["policies"]["none"]["tokens"]
    assert [t + fixed for t in none_plain] == none_counted  # every request carries the definitions
    for name in ("freemem", "trim"):  # the messages get what the definitions leave
        assert max(counted["policies"][name]["tokens"]) <= budget, name
    assert policies[0].memory.budget == budget - fixed  # type: ignore[attr-defined]
