"""Latency split of one cleaning round against a running server: prefill, decode of the commands, apply.

``python -m freemem.serving.profile --base-url http://127.0.0.1:8080/v1 --model tiny --adapter free \
--structured-output json_object --sizes 4000 16000``

or, starting (and afterwards stopping) a llama.cpp server on a GGUF base model and LoRA adapter itself:

``python -m freemem.serving.profile --serve-gguf base.gguf --serve-lora free.gguf --threads 2 \
--max-anchor-chars 24 --sizes 4000 16000``

For each context size it builds a synthetic reasoning trace of that many tokens (Qwen3 tokenizer; with the
repetition loops a cleaner is meant to remove), then, with a fresh nonce at the start of every prompt so no
server prefix cache can help:

* **prefill**: the wall time of a request with ``max_tokens=1`` (prompt processing + one token + HTTP);
* **round**: the wall time of the full cleaning request (``FreeModuleCleaner.propose``);
* **decode**: round - prefill, per generated token after the first (with a grammar, this includes the
  constrained sampling; llama-cpp-python does it in Python over the whole vocabulary, which dominates small models);
* **apply**: parsing plus :func:`freemem.apply_commands` of the model's commands, and of a handful of
  commands that really match (the random-weight test model's anchors match nothing, which is the cheap case).

If the server log is given (llama.cpp with ``verbose``), llama.cpp's own ``prompt eval`` / ``eval`` timings of
the last request are reported next to the wall-clock split.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from freemem.cleaners.free_module import FreeModuleCleaner, commands_schema
from freemem.core.commands import Command, parse_commands
from freemem.io import write_text_atomic

__all__ = ["RoundTiming", "build_trace", "main", "profile_round"]


@dataclass
class RoundTiming:
    """One context size's measurements (seconds unless named otherwise); medians over ``repeats``."""

    context_tokens: int
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    round_s: float
    decode_s: float
    decode_per_token_ms: float
    commands: int
    parse_ok: bool
    apply_model_commands_s: float | None
    apply_matching_commands_s: float | None
    applied_matching: int | None
    server_prompt_eval_ms: float | None = None
    server_eval_ms: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)


_STEPS = [
    "Let me reconsider the constraint on x. If x is even then x^2 is even, so the sum is odd.",
    "Check the small cases: n = 1 gives 3, n = 2 gives 7, n = 3 gives 13, consistent with n^2 + n + 1.",
    "Wait, that is not right. I assumed the sequence was increasing, but it need not be.",
    "Let me recompute the discriminant: b^2 - 4ac = 49 - 40 = 9, so the roots are (7 +- 3) / 4.",
    "Alternatively, use induction on n. The base case holds; assume it for n and prove it for n + 1.",
    "Hmm, I keep going around in circles. Let me verify the earlier claim once more before moving on.",
]


def build_trace(tokens: int, counter: Any | None = None) -> str:
    """A deterministic reasoning-like text of exactly ``tokens`` Qwen3 tokens (repetition loops included)."""
    if counter is None:
        from freemem.tokens import Qwen3Counter

        counter = Qwen3Counter()
    parts = ["Question: find all integers n such that n^2 + n + 1 divides n^4 + 3n^2 + 5.\n<think>\n"]
    i = 0
    approx = 0
    while approx < tokens * 1.3:
        step = _STEPS[i % len(_STEPS)]
        if i % 7 == 5:  # a verbatim loop, as in the Free()LM paper's failure cases
            block = " ".join(_STEPS[(i + k) % len(_STEPS)] for k in range(3))
            parts.append(f"Step {i}: {block}\nStep {i}b: {block}\nStep {i}c: {block}\n")
        else:
            parts.append(f"Step {i}: {step} (case {i * 7 % 13}, bound {i * 31 % 97})\n")
        approx += 40 if i % 7 != 5 else 130
        i += 1
    text = "".join(parts)
    return counter.truncate(text, tokens)


def _matching_commands(text: str, n: int = 5) -> list[Command]:
    """Commands that delete real repeated blocks (``Step Nb: ... \\n``) of ``text``."""
    out: list[Command] = []
    for m in re.finditer(r"Step (\d+)b: ", text):
        end = text.find("\n", m.end())
        if end < 0:
            break
        out.append(Command(prefix=f"Step {m.group(1)}b: ", suffix=text[end - 12 : end]))
        if len(out) == n:
            break
    return out


_PERF = re.compile(r"(prompt eval|\beval) time\s*=\s*([\d.]+) ms")


def _server_timings(log_path: Path | None, offset: int) -> tuple[float | None, float | None, int]:
    if log_path is None:
        return None, None, offset
    data = log_path.read_text(encoding="utf-8", errors="replace")
    prompt_ms = eval_ms = None
    for kind, ms in _PERF.findall(data[offset:]):
        if kind == "prompt eval":
            prompt_ms = float(ms)
        else:
            eval_ms = float(ms)
    return prompt_ms, eval_ms, len(data)


def profile_round(
    cleaner: FreeModuleCleaner,
    context_tokens: int,
    *,
    repeats: int = 3,
    server_log: Path | None = None,
) -> RoundTiming:
    """Measure one cleaning round at ``context_tokens`` (see the module docstring)."""
    from freemem.core.apply import apply_commands
    from freemem.core.context import Context
    from freemem.tokens import Qwen3Counter

    counter = Qwen3Counter()
    trace = build_trace(context_tokens, counter)
    probe = FreeModuleCleaner(
        cleaner.endpoints, model=cleaner.model, adapter=cleaner.adapter, adapter_mode=cleaner.adapter_mode,
        template=cleaner.template, structured_output="none", max_tokens=1, timeout=cleaner.timeout, max_retries=0,
    )
    probe.propose(f"[warm-up {uuid.uuid4().hex}]\n" + trace[:2000])  # load the alias (llama-cpp-python swaps models)
    prefill: list[float] = []
    rounds: list[float] = []
    completion: list[int] = []
    server_prompt: list[float] = []
    server_eval: list[float] = []
    last: Any = None
    offset = len(server_log.read_text(errors="replace")) if server_log and server_log.exists() else 0
    for _ in range(repeats):
        p = probe.propose(f"[run {uuid.uuid4().hex}]\n" + trace)
        prefill.append(p.extra["request_s"])
        _, _, offset = _server_timings(server_log, offset)
        last = cleaner.propose(f"[run {uuid.uuid4().hex}]\n" + trace)
        rounds.append(last.extra["request_s"])
        completion.append(last.usage.get("completion_tokens", 0))
        prompt_ms, eval_ms, offset = _server_timings(server_log, offset)
        if prompt_ms is not None:
            server_prompt.append(prompt_ms)
        if eval_ms is not None:
            server_eval.append(eval_ms)
    pre, full = statistics.median(prefill), statistics.median(rounds)
    n_out = int(statistics.median(completion))
    decode = max(0.0, full - pre)

    context = Context.from_text(trace)
    t0 = time.perf_counter()
    parsed = parse_commands(last.raw)
    apply_commands(context, parsed.commands)
    apply_model = time.perf_counter() - t0
    matching = _matching_commands(trace)
    t0 = time.perf_counter()
    outcome = apply_commands(context, matching)
    apply_matching = time.perf_counter() - t0
    return RoundTiming(
        context_tokens=counter.count(trace),
        prompt_tokens=last.usage.get("prompt_tokens", 0),
        completion_tokens=n_out,
        prefill_s=pre,
        round_s=full,
        decode_s=decode,
        decode_per_token_ms=1000 * decode / max(1, n_out - 1),
        commands=len(last.commands),
        parse_ok=parsed.ok,
        apply_model_commands_s=apply_model,
        apply_matching_commands_s=apply_matching,
        applied_matching=len(outcome.applied),
        server_prompt_eval_ms=statistics.median(server_prompt) if server_prompt else None,
        server_eval_ms=statistics.median(server_eval) if server_eval else None,
        samples={"prefill_s": prefill, "round_s": rounds, "server_prompt_eval_ms": server_prompt,
                 "server_eval_ms": server_eval},
    )


def _format(t: RoundTiming) -> str:
    server = ""
    if t.server_prompt_eval_ms is not None:
        server = (f" | llama.cpp (full request): prompt eval {t.server_prompt_eval_ms:.0f} ms, "
                  f"eval {t.server_eval_ms or 0:.0f} ms")
    return (f"{t.context_tokens:>6} ctx tok ({t.prompt_tokens} prompt): prefill {t.prefill_s:.2f}s, "
            f"decode {t.decode_s:.2f}s for {t.completion_tokens} tok ({t.decode_per_token_ms:.1f} ms/tok), "
            f"round {t.round_s:.2f}s; {t.commands} commands (parse ok={t.parse_ok}); "
            f"apply {1000 * (t.apply_model_commands_s or 0):.1f} ms (model's), "
            f"{1000 * (t.apply_matching_commands_s or 0):.1f} ms ({t.applied_matching} matching applied){server}")


@contextmanager
def _llamacpp_server(model: str, adapter: str, *, threads: int | None, n_ctx: int,
                     log_path: Path) -> Iterator[tuple[str, str]]:
    """Start ``llama_cpp.server`` (verbose, for its timings) on a free loopback port; stop it by PID afterwards.

    Yields the base URL and the base model's alias (the adapter is ``<alias>:free``).
    """
    import socket
    import subprocess

    from freemem.serving.commands import llamacpp_command, llamacpp_config
    from freemem.serving.process import wait_for_health
    from freemem.serving.specs import AdapterSpec, ServeSpec

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    spec = ServeSpec("llamacpp", model, (AdapterSpec("free", adapter),), port=port, context_length=n_ctx,
                     n_threads=threads, served_model_name="base")
    config_path = log_path.with_suffix(".json")
    write_text_atomic(config_path, json.dumps(llamacpp_config(spec, verbose=True)))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(llamacpp_command(spec, str(config_path)), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        wait_for_health(f"http://127.0.0.1:{port}/v1", ("/v1/models",), timeout=300, process=process)
        yield f"http://127.0.0.1:{port}/v1", "base"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freemem.serving.profile", description=__doc__.split("\n\n")[0])
    target = parser.add_argument_group("server", "a running server (--base-url, --model), or one to start here")
    target.add_argument("--base-url", default=None)
    target.add_argument("--model", default=None)
    target.add_argument("--serve-gguf", default=None, metavar="GGUF",
                        help="start a llama.cpp server on this GGUF base model (with --serve-lora) and profile it")
    target.add_argument("--serve-lora", default=None, metavar="GGUF", help="the GGUF LoRA adapter, served as 'free'")
    target.add_argument("--threads", type=int, default=None, help="CPU threads of the started server")
    parser.add_argument("--adapter", default="free")
    parser.add_argument("--adapter-mode", default="model_suffix")
    parser.add_argument("--structured-output", default="auto", choices=("auto", "json_schema", "json_object", "none"))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-anchor-chars", type=int, default=None,
                        help="bound anchors in the schema (keeps a random model's JSON finite)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--server-log", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    args = parser.parse_args(argv)
    if args.serve_gguf:
        if not args.serve_lora:
            parser.error("--serve-gguf needs --serve-lora")
        with tempfile.TemporaryDirectory(prefix="freemem-profile-") as tmp:
            log_path = Path(tmp) / "llama-server.log"
            n_ctx = max(args.sizes) + 2048  # the context, the prompt template and the answer
            with _llamacpp_server(args.serve_gguf, args.serve_lora, threads=args.threads, n_ctx=n_ctx,
                                  log_path=log_path) as (base_url, model):
                args.base_url, args.model, args.server_log = base_url, model, log_path
                args.structured_output = "json_object"  # what llama-cpp-python's server accepts
                return _profile(args)
    if not (args.base_url and args.model):
        parser.error("give --base-url and --model, or --serve-gguf and --serve-lora")
    return _profile(args)


def _profile(args: argparse.Namespace) -> int:
    schema = commands_schema(min_commands=1, max_commands=4, max_anchor_chars=args.max_anchor_chars) \
        if args.max_anchor_chars else None
    cleaner = FreeModuleCleaner(args.base_url, model=args.model, adapter=args.adapter or None,
                                adapter_mode=args.adapter_mode, structured_output=args.structured_output,
                                json_schema=schema, max_tokens=args.max_tokens, timeout=args.timeout, max_retries=0)
    for size in args.sizes:
        timing = profile_round(cleaner, size, repeats=args.repeats, server_log=args.server_log)
        print(json.dumps(asdict(timing)) if args.json else _format(timing), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
