"""The Free()LM loop on one server: a reasoning model thinks, its Free-Module adapter prunes, it goes on.

Start the server (SGLang on GPUs; see integrations/sglang/README.md)::

    freemem serve --backend sglang --python ~/envs/sglang/bin/python \\
        --model Qwen/Qwen3-8B --adapter free=ldsjmdy/Qwen3-8B-FreeLM-LoRA --context-length 32768

then::

    python examples/free_reasoner.py --base-url http://127.0.0.1:30000/v1 --model Qwen/Qwen3-8B \\
        "How many positive integers n < 1000 make n^2 + n + 41 composite?"

On a CPU, with llama.cpp (``freemem serve --backend llamacpp ...``), add ``--structured-output json_object``.
With ``--db FILE`` every step is checkpointed in SQLite; ``--resume THREAD`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence

from freemem.langgraph.reasoner import FreeReasoner, ReasonerResult


def _print_ledger(result: ReasonerResult) -> None:
    for entry in result.ledger:
        gen, clean = entry["generate"], entry["clean"]
        line = (f"round {entry['round']:>2}: +{gen['completion_tokens']} tokens "
                f"(prompt {gen['prompt_tokens']}, {gen['latency_s']:.1f}s, {gen['finish_reason']})")
        if clean:
            if clean["error"]:
                line += f" | clean skipped: {clean['error']}"
            else:
                line += (f" | clean: {clean['applied']} span(s), {clean['tokens_freed']} tokens freed, "
                         f"{len(clean['rejected'])} rejected, {clean['cleaner_latency_s']:.1f}s")
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=None)
    parser.add_argument("--base-url", default="http://127.0.0.1:30000/v1")
    parser.add_argument("--model", default="Qwen/Qwen3-8B", help="the served base model")
    parser.add_argument("--adapter", default="free", help="the Free-Module's served adapter name")
    parser.add_argument("--structured-output", default="json_schema", choices=("json_schema", "json_object", "none"))
    parser.add_argument("--chunk-tokens", type=int, default=5000, help="L: new thinking tokens between cleans")
    parser.add_argument("--max-total-tokens", type=int, default=32768)
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--db", default=None, help="SQLite file to checkpoint every step in")
    parser.add_argument("--thread", default=None, help="thread id of the run (with --db)")
    parser.add_argument("--resume", default=None, metavar="THREAD", help="continue an interrupted run (with --db)")
    args = parser.parse_args(argv)

    checkpointer = None
    if args.db:
        from langgraph.checkpoint.sqlite import SqliteSaver

        checkpointer = SqliteSaver(sqlite3.connect(args.db, check_same_thread=False))
    reasoner = FreeReasoner(
        args.base_url, model=args.model, adapter=args.adapter, chunk_tokens=args.chunk_tokens,
        max_total_tokens=args.max_total_tokens, context_length=args.context_length, checkpointer=checkpointer,
        cleaner_options={"structured_output": args.structured_output,
                         "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}},
    )
    if args.resume:
        result = reasoner.resume(args.resume)
    elif args.question:
        result = reasoner.invoke(args.question, thread_id=args.thread)
    else:
        parser.error("give a question, or --resume THREAD")
    _print_ledger(result)
    print(f"\nstatus: {result.status}; {result.generated_tokens} tokens generated, {result.tokens_freed} freed; "
          f"context now ~{result.context_tokens} tokens" + (f"; thread {result.thread_id}" if result.thread_id else ""))
    print(f"answer: {result.answer}" if result.answer is not None else "no answer (the thinking was not closed)")
    reasoner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
