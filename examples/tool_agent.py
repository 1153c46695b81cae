#!/usr/bin/env python3
"""A tool-using coding agent wrapped with freemem: long tool loops are cleaned between model calls.

    python examples/tool_agent.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B \\
        --root . "Which modules import redis, and why?"

The agent (``langchain.agents.create_agent``) has three read-only tools over ``--root``: list files, read a
file, search with a regular expression. ``FreeMemoryMiddleware`` keeps the messages under ``--budget`` tokens
(heuristic cleaner: stale and bulky tool output first, repeated calls, loops) and persists the pruned thread in
a SQLite checkpointer (``--db``), so ``--thread`` continues a conversation across runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _endpoint import add_endpoint_arguments, chat_model
from langchain.agents import create_agent
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver

from freemem import FreeMemory
from freemem.langgraph import LEDGER_KEY, FreeMemoryMiddleware

MAX_OUTPUT = 60_000  # characters a tool may return


def make_tools(root: Path) -> list:
    root = root.resolve()

    def inside(path: str) -> Path:
        p = (root / path).resolve()
        if p != root and root not in p.parents:
            raise ValueError(f"{path} is outside {root}")
        return p

    @tool
    def list_files(path: str = ".") -> str:
        """List the files under a directory of the project (recursively, up to 500 entries)."""
        base = inside(path)
        files = sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        return "\n".join(files[:500]) or "(no files)"

    @tool
    def read_file(path: str) -> str:
        """Return the text of a file of the project."""
        return inside(path).read_text(encoding="utf-8", errors="replace")[:MAX_OUTPUT]

    @tool
    def search(pattern: str, path: str = ".") -> str:
        """Search the project's text files for a regular expression; returns file:line: text."""
        rx = re.compile(pattern)
        hits = []
        for p in sorted(inside(path).rglob("*")):
            if not p.is_file() or p.suffix in {".png", ".gguf", ".sqlite", ".whl"}:
                continue
            try:
                for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                    if rx.search(line):
                        hits.append(f"{p.relative_to(root)}:{n}: {line.strip()[:200]}")
            except (UnicodeDecodeError, OSError):
                continue
        return "\n".join(hits[:400]) or "(no match)"

    return [list_files, read_file, search]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_endpoint_arguments(p)
    p.add_argument("task", nargs="?", default="Give a short tour of this project: what it does and how it is laid out.")
    p.add_argument("--root", type=Path, default=Path("."), help="project the tools may read (default .)")
    p.add_argument("--db", default="freemem-example.sqlite", help="SQLite checkpoint file")
    p.add_argument("--thread", default="tool-agent", help="thread id (continue a conversation)")
    args = p.parse_args()
    model = chat_model(args, "examples/tool_agent.py")

    memory = FreeMemory(budget=args.budget)
    middleware = FreeMemoryMiddleware(memory)
    with SqliteSaver.from_conn_string(args.db) as saver:
        agent = create_agent(model, make_tools(args.root), middleware=[middleware], checkpointer=saver,
                             system_prompt="You are a careful engineer. Use the tools to answer precisely and cite files.")
        config = {"configurable": {"thread_id": args.thread}, "recursion_limit": 200}
        out = agent.invoke({"messages": [("user", args.task)]}, config)
        print(out["messages"][-1].content)
        state = agent.get_state(config).values
    ledger = state.get(LEDGER_KEY, [])
    freed = sum(max(0, e["tokens_before"] - e["tokens_after"]) for e in ledger)
    print(f"\n[freemem] {middleware.stats.steps} model calls, {len(ledger)} cleaning rounds, {freed:,} tokens freed; "
          f"thread now {memory.count_messages(state['messages']):,} tokens (budget {args.budget:,}), "
          f"{1000 * middleware.stats.time_s / max(1, middleware.stats.steps):.1f} ms per call.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
