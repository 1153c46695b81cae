"""The ``freemem`` command: demo, clean, bench, serve, thread, ui.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``; modules are
imported only when their subcommand runs, so ``freemem clean`` never pays for LangGraph or Redis imports.
Errors freemem raises on purpose print one clear line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from freemem.core.errors import FreememError

__all__ = ["main"]

#: subcommand -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("freemem.cli.demo", "replay a long tool-use session through a real agent, with and without freemem"),
    "clean": ("freemem.cli.clean", "prune a transcript or reasoning-trace file"),
    "bench": ("freemem.cli.bench", "run a benchmark (freemem bench --help lists them; needs the freemem-bench distribution)"),
    "serve": ("freemem.serving.launch", "start (or print) a Free-Module server: SGLang on GPUs, llama.cpp on CPUs"),
    "ui": ("freemem.cli.ui", "inspect threads in the browser: tokens per call, cleaning events, removed text, restore"),
    "thread": ("freemem.cli.thread", "list, show or restore what freemem freed in a persisted thread (Redis or SQLite)"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from freemem import __version__

    parser = argparse.ArgumentParser(prog="freemem", description="free() for LLM agents: prune, archive, persist.")
    parser.add_argument("--version", action="version", version=f"freemem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (its arguments are needed to parse).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        result = args._run(args)
        return result if isinstance(result, int) else 0
    except FreememError as exc:
        print(f"freemem: error: {exc}", file=sys.stderr)
        return 1
    except RecursionError:
        # Input nested deeper than Python's stack (readers catch their own; this is the net under the rest).
        print("freemem: error: input nested too deeply to process", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("freemem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
