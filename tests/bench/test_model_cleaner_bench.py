"""``freemem bench reasoning|transcripts --cleaner free-module|prompted --base-url URL --model NAME`` (issue 13),
and the loop-window comparison, over a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from freemem.cli.main import main  # noqa: E402
from freemem.core.errors import ConfigError  # noqa: E402
from freemem_bench._common import add_cleaner_arguments, cleaner_factory, load_cleaner  # noqa: E402
from freemem_bench.reasoning import Trace, llama_timings, loop_windows  # noqa: E402
from tests.serving.stub_openai import StubReply, start_stub  # noqa: E402

WRONG_PATH = "Hmm, a wrong path: assume x = 3, then 9 = 10, contradiction.\n"
LOOP_LINE = "Wait, let me recompute the total once more.\n"
TRACE = ("Problem: compute the total.\n" + "".join(f"Step {i}: partial sum {i * i}.\n" for i in range(60))
         + WRONG_PATH + LOOP_LINE * 150)


@pytest.fixture
def stub():
    server = start_stub()
    yield server
    server.close()


def write_traces(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    records = [{"question": "Problem: compute the total.", "code": ["No loop here, just a short answer.\n"]},
               {"question": "Problem: compute the total.", "code": [TRACE]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_cleaner_arguments(p)
    return p.parse_args(list(argv))


def test_loop_windows_take_the_tail_from_a_line_start() -> None:
    windows = loop_windows([Trace("a", "f", "", "no loop\n"), Trace("b", "f", "", TRACE)], 5, chars=3000)
    assert len(windows) == 1 and windows[0].label == f"b[-{len(windows[0].text)}:]"
    assert TRACE.endswith(windows[0].text) and windows[0].text.startswith("Wait") and len(windows[0].text) <= 3000


def test_model_cleaner_options_are_checked_before_the_run() -> None:
    with pytest.raises(ConfigError, match="needs --base-url URL and --model NAME"):
        cleaner_factory(parse("--cleaner", "free-module"), counter=None)
    with pytest.raises(ConfigError, match="--base-url is for --cleaner free-module or prompted"):
        cleaner_factory(parse("--base-url", "http://127.0.0.1:1/v1"), counter=None)
    with pytest.raises(ConfigError, match="--adapter is for --cleaner free-module"):
        cleaner_factory(parse("--cleaner", "prompted", "--base-url", "http://127.0.0.1:1/v1", "--model", "m",
                              "--adapter", "free"), counter=None)
    # What crashed before: a model cleaner's class named as a spec says how to do it instead.
    with pytest.raises(ConfigError, match="--cleaner free-module"):
        load_cleaner("freemem.cleaners:FreeModuleCleaner", budget=None, counter=None)
    make = cleaner_factory(parse("--cleaner", "free-module", "--base-url", "http://127.0.0.1:1/v1", "--model", "m",
                                 "--cleaner-timeout", "42"), counter=None)
    assert make(100) is make(None)  # one cleaner for the run: its detected endpoint state carries over
    assert make(None).cleaner.timeout == 42 and make(None).cleaner.adapter_mode == "none"


def test_reasoning_loop_windows_with_the_free_module(tmp_path: Path, stub) -> None:
    stub.default = StubReply(content=json.dumps({"commands": [
        {"prefix": "Hmm, a wrong path", "suffix": "contradiction.\n"},  # unique: applied
        {"prefix": "Wait, let me recompute", "suffix": "more.\n"},  # a loop line: every copy goes ("all")
        {"prefix": "A sentence the trace never had", "suffix": "."},  # not found
    ]}))
    log = tmp_path / "server.log"
    log.write_text("llama_perf_context_print: prompt eval time =  2000.00 ms /   500 tokens\n"
                   "llama_perf_context_print:        eval time =   400.00 ms /    20 runs\n")
    out = tmp_path / "windows.json"
    argv = ["bench", "reasoning", "--data", str(write_traces(tmp_path)), "--counter", "approx", "--loop-windows", "3",
            "--cleaner", "free-module", "--base-url", stub.base_url, "--model", "tiny", "--json", str(out), "-q"]
    assert main(argv) == 0
    result = json.loads(out.read_text())["loop_windows"]
    assert len(result["windows"]) == 1 and len(stub.requests) == 1
    sent = stub.requests[0]["json"]
    assert sent["model"] == "tiny" and sent["response_format"]["type"] == "json_schema"
    assert WRONG_PATH in sent["messages"][-1]["content"]
    (row,) = result["rows"]["free-module"]
    assert (row["proposed"], row["applied_commands"]) == (3, 2)
    assert row["rejected"][0]["reason"] == "prefix_not_found" and "not found" in row["rejected"][0]["detail"]
    assert row["raw"].startswith('{"commands"') and row["usage"]["prompt_tokens"] == 11
    assert row["tokens_after"] < row["tokens"] and row["apply_ms"] >= 0
    heuristic = result["summary"]["heuristic"]
    assert heuristic["tokens_freed"] > 0 and heuristic["loop_tokens_freed"] > 0
    acceptance = result["acceptance"]
    assert acceptance["applied_share"] == pytest.approx(2 / 3) and not acceptance["applied_70_percent"]
    assert acceptance["model_freed_vs_heuristic"] > 0.5  # the loop line named once, cut at every copy
    assert acceptance["no_answer_line_lost"]
    # No server log given: no prefill/decode split, but the run says how to get one.
    assert row["server_timings"] is None


def test_llama_timings_read_the_last_request_after_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("prompt eval time = 1000.00 ms / 100 tokens\n        eval time = 500.00 ms / 10 runs\n")
    first, end = llama_timings(log)
    assert first == {"prefill_tokens": 100, "prefill_s": 1.0, "prefill_tps": 100.0, "decode_tokens": 10,
                     "decode_s": 0.5, "decode_tps": 20.0}
    assert llama_timings(log, end) == (None, end)
    with log.open("a") as fh:
        fh.write("prompt eval time = 3000.00 ms / 600 tokens\n eval time = 100.00 ms / 5 runs\n")
    again, _ = llama_timings(log, end)
    assert again is not None and again["prefill_tps"] == 200.0 and again["decode_tokens"] == 5


def test_transcripts_with_the_prompted_cleaner(tmp_path: Path, stub) -> None:
    pytest.importorskip("langchain_openai", reason="--cleaner prompted needs langchain-openai")
    msgs = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Do the task."}]
    for i in range(6):
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"output {i}\n" * 400})
    msgs.append({"role": "assistant", "content": "done"})
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"instance_id": "x", "messages": msgs}) + "\n")
    out = tmp_path / "t.json"
    argv = ["bench", "transcripts", "--data", str(data), "--counter", "approx", "--budget", "1500",
            "--policies", "freemem,none", "--cleaner", "prompted", "--base-url", stub.base_url, "--model", "chat",
            "--json", str(out), "-q"]
    assert main(argv) == 0
    assert stub.requests and all(r["json"]["model"] == "chat" for r in stub.requests)
    result = json.loads(out.read_text())
    assert result["cleaner"] == "prompted" and result["trajectories"] == 1
