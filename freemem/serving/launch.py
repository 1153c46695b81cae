"""``freemem serve``: build, print or run the command that serves a base model plus the Free-Module adapter.

Backends:

* ``sglang`` (GPUs): ``python -m sglang.launch_server --model-path M --enable-lora --lora-paths free=A ...``.
  SGLang pins its own torch/transformers, so it runs in *its own* environment: pass that interpreter with
  ``--python``. Requests pick the adapter with ``model="M:free"``.
* ``vllm`` (GPUs): ``python -m vllm.entrypoints.openai.api_server --model M --enable-lora --lora-modules free=A``.
  Requests pick the adapter with ``model="free"``.
* ``llamacpp`` (CPUs): llama-cpp-python's server with a JSON config listing the GGUF base model under an alias
  and, for each adapter, the same base plus ``lora_path`` under ``<alias>:<adapter>`` — the SGLang naming, so
  the cleaner is configured the same way. llama-cpp-python reads *only* the config file when it is given one,
  so ``--server-args`` (``--chat_format chatml --n_batch 256``, llama-cpp-python's own option names) go into
  the config: server settings at its top level, model settings into every model entry
  (:func:`llamacpp_settings`).

Everything up to the process start is a pure function of :class:`ServeSpec` (:func:`~freemem.serving.commands.build_plan`), so
the commands are testable without a GPU. Modules: :mod:`~freemem.serving.specs` (what to serve),
:mod:`~freemem.serving.commands` (the command per backend), :mod:`~freemem.serving.process` (start, health,
stop); this one is the command line: :func:`add_arguments` and :func:`run` mount it as a CLI subcommand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import TextIO

from freemem.serving.commands import build_plan
from freemem.serving.process import launch
from freemem.serving.specs import BACKENDS, AdapterSpec, ServeSpec

__all__ = ["add_arguments", "main", "run", "spec_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``freemem serve``'s options to ``parser``."""
    parser.add_argument("--backend", choices=BACKENDS, default="sglang",
                        help="sglang (GPUs, default), vllm (GPUs) or llamacpp (CPUs, GGUF files)")
    parser.add_argument("--model", required=True,
                        help="base model: HF id or directory (sglang, vllm), GGUF file (llamacpp)")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                        help="LoRA adapter to serve (repeatable; a bare PATH is named 'free'), "
                             "e.g. free=ldsjmdy/Qwen3-8B-FreeLM-LoRA")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="listen port (default: sglang 30000, vllm 8000, llamacpp 8080)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the server's own environment (default: this one)")
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size (sglang, vllm)")
    parser.add_argument("--dp", type=int, default=1, help="data parallel size (sglang, vllm)")
    parser.add_argument("--context-length", type=int, default=None,
                        help="context window (sglang --context-length, vllm --max-model-len, llamacpp n_ctx)")
    parser.add_argument("--max-loras-per-batch", type=int, default=None,
                        help="adapters per batch (sglang; vllm --max-loras)")
    parser.add_argument("--max-lora-rank", type=int, default=None, help="largest LoRA rank (sglang, vllm)")
    parser.add_argument("--served-model-name", default=None, help="request name of the base model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (llamacpp)")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to a GPU (llamacpp)")
    parser.add_argument("--config-file", default=None, help="where to write the llamacpp server config")
    parser.add_argument("--server-args", action="append", default=[], metavar="ARGS",
                        help="extra arguments for the server, shell-quoted (repeatable); for llamacpp, "
                             "llama-cpp-python settings such as '--chat_format chatml', written into its config")
    parser.add_argument("--startup-timeout", type=float, default=900.0,
                        help="seconds to wait for the server to become healthy (default 900)")
    parser.add_argument("--detach", action="store_true",
                        help="return once the server is healthy and leave it running (prints its PID)")
    parser.add_argument("--dry-run", action="store_true", help="print the command (and llamacpp config), run nothing")


def spec_from_args(args: argparse.Namespace) -> ServeSpec:
    """A :class:`ServeSpec` from parsed :func:`add_arguments` options."""
    extra: list[str] = []
    for chunk in args.server_args or []:
        extra += shlex.split(chunk)
    return ServeSpec(
        backend=args.backend,
        model=args.model,
        adapters=tuple(AdapterSpec.parse(a) for a in args.adapter or []),
        host=args.host,
        port=args.port,
        python=args.python,
        tp=args.tp,
        dp=args.dp,
        context_length=args.context_length,
        max_loras_per_batch=args.max_loras_per_batch,
        max_lora_rank=args.max_lora_rank,
        served_model_name=args.served_model_name,
        n_threads=args.threads,
        n_gpu_layers=args.n_gpu_layers,
        config_file=args.config_file,
        extra_args=tuple(extra),
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``freemem serve``; returns the exit code (the server's own, when it runs in the foreground).

    Raises :class:`ConfigError` for invalid options and :class:`ServeError` when the server cannot be started
    or does not become healthy (the server we started is stopped first); the CLI prints them as one line.
    """
    out = out or sys.stdout
    plan = build_plan(spec_from_args(args))
    if args.dry_run:
        print(plan.shell(), file=out)
        if plan.config is not None:
            print(f"# {plan.config_path}:", file=out)
            print(json.dumps(plan.config, indent=2), file=out)
        return 0
    return launch(plan, out=out, startup_timeout=args.startup_timeout, detach=args.detach)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m freemem.serving.launch ...``."""
    parser = argparse.ArgumentParser(prog="freemem serve", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
