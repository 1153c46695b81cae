"""``freemem bench core``: the core's own costs on a synthetic long transcript.

* applying 50 commands to a 128k-token context (anchors chosen by :class:`AnchorMaker`, as a cleaner would);
* counting one new 2k-token message on top of a 128k-token context already counted (the per-turn cost);
* rendering the context and the heuristic cleaner's proposal, for scale.

The transcript is generated (tool calls with bulky, varied outputs), so the benchmark needs no data folder.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

__all__ = ["add_arguments", "run", "synthetic_transcript"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", type=int, default=128_000, help="context size in tokens (default 128k)")
    p.add_argument("--commands", type=int, default=50, help="commands per apply (default 50)")
    p.add_argument("--counter", default="qwen3", help="token counter for the counting figure (default qwen3)")
    p.add_argument("--repeat", type=int, default=20, help="timed repetitions (default 20)")
    p.add_argument("--json", help="write the figures as JSON")


def synthetic_transcript(tokens: int, counter: Any, seed: int = 0, message_tokens: int = 2000) -> list[dict[str, Any]]:
    """An OpenAI-format tool-use transcript of about ``tokens`` tokens, messages of ~``message_tokens``."""
    rng = random.Random(seed)
    words = ["config", "parser", "value", "return", "self", "error", "module", "path", "index", "token", "cache",
             "def", "class", "import", "for", "in", "if", "else", "None", "True", "list", "dict"]
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful coding agent."},
                                  {"role": "user", "content": "Fix the failing tests in the repository."}]
    total, i = 0, 0
    while total < tokens:
        lines = []
        while counter.count("\n".join(lines)) < message_tokens:
            lines.extend(f"{rng.choice(words)}_{rng.randrange(10**6)} = {' '.join(rng.choices(words, k=8))}"
                         for _ in range(20))
        body = "\n".join(lines)
        msgs.append({"role": "assistant", "content": f"Step {i}: reading file {i}.", "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "read", "arguments": f'{{"n": {i}}}'}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": body})
        total += counter.count(body) + 20
        i += 1
    return msgs


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(1000 * statistics.median(samples), 3), "p95_ms": round(
        1000 * sorted(samples)[max(0, int(len(samples) * 0.95) - 1)], 3), "min_ms": round(1000 * min(samples), 3)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from freemem import AnchorMaker, CachedCounter, Context, HeuristicCleaner, apply_commands, get_counter

    console = Console()
    approx = get_counter("approx")
    real = get_counter(args.counter)
    msgs = synthetic_transcript(args.tokens, real)
    rng = random.Random(1)

    render = []
    for _ in range(max(3, args.repeat // 4)):
        t0 = time.perf_counter()
        ctx = Context.from_messages(msgs)
        render.append(time.perf_counter() - t0)
    # 50 spans inside editable tool outputs, anchored the way a rule-based cleaner does it
    maker = AnchorMaker(ctx)
    editable = [r for r in ctx.regions if r.editable and r.end - r.start > 2000]
    commands = []
    for r in rng.sample(editable, min(args.commands, len(editable))):
        s = rng.randrange(r.start, r.end - 1500)
        cmd = maker.command(s, s + rng.randrange(200, 1400))
        if cmd is not None:
            commands.append(cmd)
    applied = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = apply_commands(ctx, commands, counter=approx)
        applied.append(time.perf_counter() - t0)
    assert len(out.applied) == len(commands) and not out.rejected

    # per-turn counting: the context is counted once; then one new 2k-token message arrives
    counting = []
    for k in range(args.repeat):
        cached = CachedCounter(real)
        texts = [m["content"] for m in msgs]
        cached.count_texts(texts)
        new = synthetic_transcript(2000, real, seed=100 + k)[3]["content"]
        t0 = time.perf_counter()
        cached.count_texts(texts + [new])
        counting.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    proposal = HeuristicCleaner(budget=args.tokens // 4, counter=CachedCounter(approx)).propose(ctx)
    heuristic_s = time.perf_counter() - t0

    result = {
        "context_tokens": args.tokens, "context_chars": len(ctx.text), "messages": len(msgs),
        "commands": len(commands), "counter": real.name,
        "apply": _ms(applied), "count_new_2k_message": _ms(counting), "render_context": _ms(render),
        "heuristic_propose_ms": round(1000 * heuristic_s, 1), "heuristic_commands": len(proposal.commands),
    }
    table = Table(title=f"freemem bench core — {args.tokens:,}-token context, {len(msgs)} messages")
    table.add_column("operation")
    table.add_column("median ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_row(f"apply {len(commands)} commands", str(result["apply"]["median_ms"]), str(result["apply"]["p95_ms"]))
    table.add_row(f"count a new 2k-token message ({real.name})", str(result["count_new_2k_message"]["median_ms"]),
                  str(result["count_new_2k_message"]["p95_ms"]))
    table.add_row("render the context", str(result["render_context"]["median_ms"]),
                  str(result["render_context"]["p95_ms"]))
    table.add_row(f"heuristic propose (budget {args.tokens // 4:,})", str(result["heuristic_propose_ms"]), "")
    console.print(table)
    return result
