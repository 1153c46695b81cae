"""InftyThink-style sawtooth reasoning with freemem's ``summarize`` policy, against any OpenAI-compatible server.

    python examples/summarize_reasoner.py --base-url http://localhost:30000/v1 --model Qwen/Qwen3-8B \\
        --question "How many positive divisors does 2024 have?" --segment-tokens 4096

Each round the model reasons for at most ``--segment-tokens`` tokens and ends with a <summary>; the next round
sees only the question and that summary. Needs ``pip install 'freemem[examples]'`` (langchain-openai);
``--base-url``/``--model`` default to $OPENAI_BASE_URL/$FREEMEM_MODEL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _endpoint import add_endpoint_arguments, chat_model

from freemem.langgraph.inftythink import InftyThinker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_endpoint_arguments(p, budget=False, timeout=600.0)
    p.add_argument("--question", default="How many positive divisors does 2024 have? Put the answer in \\boxed{}.")
    p.add_argument("--segment-tokens", type=int, default=4096)
    p.add_argument("--summary-tokens", type=int, default=1024)
    p.add_argument("--max-rounds", type=int, default=8)
    p.add_argument("--counter", default="auto", help="token counter: qwen3, o200k_base, approx, auto")
    args = p.parse_args(argv)
    thinker = InftyThinker(chat_model(args, "examples/summarize_reasoner.py"),
                           segment_tokens=args.segment_tokens, summary_tokens=args.summary_tokens,
                           max_rounds=args.max_rounds, counter=args.counter)
    try:
        result = thinker.invoke(args.question)
    except Exception as exc:  # noqa: BLE001 - an example: say what failed, plainly
        print(f"error: the model call failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for i, summary in enumerate(result.summaries, 1):
        print(f"--- summary after round {i} ---\n{summary}\n")
    print(f"answer: {result.answer}  (status: {result.status}, rounds: {result.rounds})")
    print(json.dumps({"calls": len(result.calls), "peak_context": result.peak_context,
                      "bound": thinker.context_bound(args.question), "total_tokens": result.total_tokens}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
