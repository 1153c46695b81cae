"""The examples against a loopback OpenAI-compatible server, and ``freemem bench gated`` on generated data."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from policyfakes import filler

from freemem_bench import gated as bench_gated

ROOT = Path(__file__).resolve().parents[2]


def _reply(messages: list[dict]) -> str:
    """A scripted 'model': InftyThink rounds, gated memory steps and answers, decided from the prompt."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "<chunk" in user:
        chunk = re.search(r"<chunk[^>]*>\n(.*)\n</chunk>", user, re.S).group(1)
        memory = re.search(r"<current_memory>\n(.*)\n</current_memory>", user, re.S).group(1)
        found = [s for s in re.findall(r"[^.]*Heron[^.]*\.", chunk)]
        done = "northern pier" in " ".join(found) or "northern pier" in memory
        if found:
            return (f"<update>yes</update><memory>{' '.join(found)} {memory if 'No memory' not in memory else ''}"
                    f"</memory><exit>{'end' if done else 'continue'}</exit>")
        return "<update>no</update><memory></memory><exit>continue</exit>"
    if "Answer the question from your memory" in system:
        return "<answer>7-4-1-9, from the northern pier</answer>"
    if "Summary of your reasoning so far" in user:
        return "2024 = 2^3 * 11 * 23, so (3+1)(1+1)(1+1) = 16. Final answer: \\boxed{16}"
    return "Factor 2024 first. <summary>2024 = 8 * 253 = 2^3 * 11 * 23.</summary>"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = _reply(body["messages"])
        payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def test_examples_refuse_without_endpoint() -> None:
    for script in ("summarize_reasoner.py", "gated_reader.py"):
        done = _run(script)
        assert done.returncode == 2 and "no endpoint configured" in done.stderr


def test_summarize_example_runs(endpoint: str) -> None:
    done = _run("summarize_reasoner.py", "--base-url", endpoint, "--model", "m", "--counter", "approx")
    assert done.returncode == 0, done.stderr
    assert "answer: 16" in done.stdout and "2^3 * 11 * 23" in done.stdout


def test_gated_example_runs(endpoint: str) -> None:
    done = _run("gated_reader.py", "--base-url", endpoint, "--model", "m", "--counter", "approx",
                "--chunk-tokens", "2000")
    assert done.returncode == 0, done.stderr
    assert "answer: 7-4-1-9, from the northern pier" in done.stdout
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["chunks_read"] < metrics["chunks_total"]  # the exit gate fired


def _dataset(tmp_path: Path, n: int = 4) -> Path:
    folder = tmp_path / "hotpotqa_distractor_dev100"
    folder.mkdir()
    long_rows, fact_rows = [], []
    for i in range(n):
        facts = [(f"Title {i}A", f"Alpha fact number {i} is here."), (f"Title {i}B", f"Beta fact {i} is there.")]
        passages = [" ".join(filler(8, 10 * i + k)) for k in range(40)]
        passages[5 + i], passages[25 + i] = facts[0][1], facts[1][1]
        titles = [f"Other {k}" for k in range(40)]
        titles[5 + i], titles[25 + i] = facts[0][0], facts[1][0]
        context = "\n\n".join(f"Passage {k + 1}:\n{t}\n{p}" for k, (t, p) in enumerate(zip(titles, passages)))
        question = f"Question {i}?"
        long_rows.append({"id": i, "question": question, "answer": f"ans{i}", "context": context,
                          "supporting_titles": [t for t, _ in facts]})
        fact_rows.append({"question": question, "answer": f"ans{i}",
                          "supporting_facts": {"title": [t for t, _ in facts], "sent_id": [0, 0]},
                          "context": {"title": [t for t, _ in facts], "sentences": [[s] for _, s in facts]}})
    (folder / bench_gated.LONG_FILE).write_text("\n".join(json.dumps(r) for r in long_rows) + "\n")
    (folder / bench_gated.FACTS_FILE).write_text(json.dumps(fact_rows))
    return tmp_path


def test_bench_gated_on_generated_data(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench_gated.add_arguments(parser)
    out = tmp_path / "gated.json"
    args = parser.parse_args(["--data", str(_dataset(tmp_path)), "--limit", "3", "--json", str(out),
                              "--chunk-tokens", "300", "--memory-tokens", "200", "--counter", "approx", "-q"])
    result = bench_gated.run(args)
    assert json.loads(out.read_text())["questions"] == 3 and result["facts"] == "sentences"
    modes = result["modes"]
    gated, no_exit, ungated = (modes[m] for m in bench_gated.MODES)
    assert all(m["evidence_in_memory"] == 1.0 and m["answers_correct"] == 1.0 for m in modes.values())
    assert gated["calls_total"] < no_exit["calls_total"] == ungated["calls_total"]
    assert gated["chunks_read_share"] < 1.0 == no_exit["chunks_read_share"]
    # Gated: the memory changes only on the two fact chunks; MemAgent rewrites it on every chunk.
    assert no_exit["memory_updates_mean"] == 2 and gated["memory_updates_mean"] == 2
    assert ungated["memory_updates_mean"] == result["chunks_per_question_mean"] > 2
    assert all(m["memory_peak_max"] <= 200 for m in modes.values())
    assert "| gated + exit |" in result["markdown"]
