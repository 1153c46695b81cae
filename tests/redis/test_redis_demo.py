"""``freemem demo --redis URL``: the demo's thread persisted in a real redis-server, then listed by
``freemem thread list``."""

from __future__ import annotations

import argparse
import subprocess
import sys

from freemem.cli.demo import add_arguments, run_demo


def test_demo_persists_its_thread_in_redis(redis_server) -> None:
    url = redis_server.url
    p = argparse.ArgumentParser()
    add_arguments(p)
    result = run_demo(p.parse_args(["--counter", "approx", "--redis", url]))
    s = result.summary
    assert s["checkpointer"].startswith("Redis") and s["calls_over_budget_with"] == 0
    assert s["pairing_violations"] == 0 and s["final_answers_kept"]
    out = subprocess.run([sys.executable, "-m", "freemem.cli.main", "thread", "list", s["thread_id"], "--redis", url,
                          "--key-prefix", "freemem-demo"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") > 3  # the cleaning events archived for the thread
