"""``freemem bench recall``: search latency over every archive, on a small corpus (the figures themselves come from
the full run; here: that it runs, covers each archive, and no hit comes from another thread)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from freemem.cli.main import main
from freemem_bench.recall import build_events, questions


@pytest.mark.slow  # starts its own redis-server
def test_bench_recall_times_every_archive_and_stays_in_its_thread(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt: redis-server)")
    out = tmp_path / "recall.json"
    assert main(["bench", "recall", "--passages", "300", "--repeat", "1", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["archives"]) == {"memory", "sqlite", "redis"} and result["passages"] == 300
    for row in result["archives"].values():
        assert row["searches"] == result["questions"] > 0
        assert row["hits_from_other_threads"] == 0 and row["p95_ms"] >= row["p50_ms"] > 0
        assert row["searches_without_hits"] < row["searches"]


def test_bench_recall_corpus_and_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, asked, _source = questions(str(tmp_path / "no-data-here"))  # generated when the data is absent
    events = build_events(lines, 45, 20, tag="x")
    assert [len(e["folds"][0]["messages"]) for e in events] == [20, 20, 5]
    assert asked and all(m["message"]["id"].startswith("x-") for e in events for m in e["folds"][0]["messages"])
    assert main(["bench", "recall", "--passages", "0"]) != 0
    assert "--passages must be positive" in capsys.readouterr().err
    assert main(["bench", "recall", "--passages", "20", "--archives", "nope", "--quiet"]) != 0
    assert "unknown archive 'nope'" in capsys.readouterr().err
