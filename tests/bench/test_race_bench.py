"""freemem bench race: two writers on one thread, counted the same way for every saver (structure and the
accounting; how many turns a saver without a lease loses depends on the scheduling and is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from freemem.cli.main import main


def test_race_bench_counts_every_acknowledged_turn(tmp_path: Path) -> None:
    out = tmp_path / "race.json"
    assert main(["bench", "race", "--savers", "memory,sqlite", "--turns", "3", "--step-ms", "1",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["saver"] for r in data["rows"]] == ["memory", "sqlite"]
    for row in data["rows"]:
        assert row["acked"] == 6 and row["acked_by_writer"] == {"A": 3, "B": 3} and not row["errors"]
        assert row["kept"] + len(row["lost"]) == row["acked"]
        assert sum(row["lost_by_writer"].values()) == len(row["lost"])
        assert row["checkpoints"] >= 3 * 5  # input + three steps per turn of one writer at least
