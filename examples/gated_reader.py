"""GRU-Mem-style gated reading with freemem's ``gated`` policy, against any OpenAI-compatible server.

    python examples/gated_reader.py --base-url http://localhost:30000/v1 --model Qwen/Qwen3-8B \\
        --file long_report.txt --question "Which supplier missed the March deadline?"

Without ``--file`` it reads a generated needle-in-a-haystack document. The model reads the document chunk by
chunk (``--chunk-tokens``) into a bounded memory (``--memory-tokens``), deciding each step whether to update
the memory and whether to stop; ``--no-exit-gate`` reads everything. Needs ``pip install 'freemem[examples]'``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _endpoint import add_endpoint_arguments, chat_model

from freemem.langgraph.gated import GatedReader


def haystack(n_paragraphs: int = 400, seed: int = 0) -> str:
    """Filler paragraphs with two needles, at about 30% and 60% of the text."""
    rng = random.Random(seed)
    words = "river stone garden window letter market winter orange silver engine paper mountain".split()
    paras = [" ".join(rng.choice(words) for _ in range(60)).capitalize() + "." for _ in range(n_paragraphs)]
    paras.insert(int(0.3 * n_paragraphs), "The launch code for project Heron is 7-4-1-9.")
    paras.insert(int(0.6 * n_paragraphs), "Project Heron launches from the northern pier.")
    return "\n\n".join(paras)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_endpoint_arguments(p, budget=False, timeout=600.0)
    p.add_argument("--file", type=Path, help="the long document (default: a generated haystack)")
    p.add_argument("--question", default="What is the launch code of project Heron, and where does it launch from?")
    p.add_argument("--chunk-tokens", type=int, default=5000)
    p.add_argument("--memory-tokens", type=int, default=1024)
    p.add_argument("--no-exit-gate", action="store_true", help="read every chunk (ignore the exit gate)")
    p.add_argument("--counter", default="auto", help="token counter: qwen3, o200k_base, approx, auto")
    args = p.parse_args(argv)
    document = args.file.read_text(encoding="utf-8") if args.file else haystack()
    reader = GatedReader(chat_model(args, "examples/gated_reader.py"),
                         chunk_tokens=args.chunk_tokens, memory_tokens=args.memory_tokens,
                         use_exit_gate=not args.no_exit_gate, counter=args.counter)
    try:
        result = reader.invoke(args.question, document)
    except Exception as exc:  # noqa: BLE001 - an example: say what failed, plainly
        print(f"error: the model call failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for step in result.steps:
        print(f"chunk {step.index + 1}/{result.chunks_total}: update={step.update} exit={step.exit} "
              f"memory={step.memory_tokens} tokens" + (f"  [{step.fallback}]" if step.fallback else ""))
    print(f"\nmemory:\n{result.memory}\n\nanswer: {result.answer}")
    print(json.dumps({k: v for k, v in result.metrics().items() if k != "memory_sizes"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
