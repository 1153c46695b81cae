"""``freemem demo``: the README's main command, on its embedded defaults (no servers)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from freemem.cli.demo import add_arguments, load_session, run_demo
from freemem.core.errors import FormatError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_demo_replays_the_session_under_budget_with_a_sawtooth(tmp_path: Path) -> None:
    result = run_demo(_args("--budget", "12000", "--counter", "approx", "--db", str(tmp_path / "t.sqlite")))
    s = result.summary
    session = load_session()
    assert s["model_calls"] == sum(len(t["steps"]) + 1 for t in session["turns"]) == len(result.without)
    assert s["calls_over_budget_with"] == 0 and s["calls_over_budget_without"] > 10
    assert s["peak_context_without"] > 4 * 12000 and s["peak_context_with"] <= 12000
    assert s["pairing_violations"] == 0 and s["cleaner_errors"] == 0 and s["final_answers_kept"]
    assert s["tokens_saved"] == s["tokens_sent_without"] - s["tokens_sent_with"] > 0
    assert s["persisted_thread_tokens"] < s["unpruned_thread_tokens"] / 3
    # a sawtooth: the pruned context drops back several times while the unpruned one only grows
    drops = sum(b < a for a, b in zip(result.with_freemem, result.with_freemem[1:]))
    assert drops >= 3 and all(b >= a for a, b in zip(result.without, result.without[1:]))
    assert (tmp_path / "t.sqlite").stat().st_size > 0


def test_demo_cli_writes_plot_and_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, "-m", "freemem.cli.main", "demo", "--delay", "0", "--counter", "approx",
                          "--plot", str(tmp_path / "saw.png"), "--json", str(tmp_path / "demo.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tokens saved" in out.stdout and "Traceback" not in out.stderr
    assert (tmp_path / "saw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "demo.json").read_text())
    assert len(data["with_freemem"]) == len(data["without"]) == data["summary"]["model_calls"]


def test_a_bad_session_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"turns": []}')
    with pytest.raises(FormatError, match="non-empty 'turns'"):
        load_session(bad)
    out = subprocess.run([sys.executable, "-m", "freemem.cli.main", "demo", "--session", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "turns" in out.stderr


def test_demo_prints_the_exact_commands_that_inspect_its_thread(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    import shlex

    from freemem.cli.demo import inspect_commands
    from freemem.cli.main import main

    db = tmp_path / "demo dir" / "t.sqlite"  # a space: the printed commands quote the path
    db.parent.mkdir()
    assert main(["demo", "--counter", "approx", "--delay", "0", "--db", str(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    thread = out.split("thread id: ")[1].split()[0]
    lines = inspect_commands({"thread_id": thread, "store": {"sqlite": str(db)}})
    show = lines[1].split(": ", 1)[1]
    assert " ".join(show.split()) in out and "freemem ui --sqlite" in out
    # The printed `thread show` runs as printed, and the archive (same file) names what was freed.
    assert main(shlex.split(show)[1:] + ["--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["events"] and shown["has_archive"] and not shown["orphaned_refs"]
    assert inspect_commands({"thread_id": "t", "store": {"redis": "redis://h:1/0", "key_prefix": "freemem-demo"}})[
        1].endswith("freemem thread show t --redis redis://h:1/0 --key-prefix freemem-demo")
