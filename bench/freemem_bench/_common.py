"""Shared pieces of the benchmarks: data paths, common options, counters, cleaners, timing, tables, JSON, PNG.

Every benchmark module uses these so that options, output and figures look the same across ``freemem bench``
commands. Nothing here downloads anything; matplotlib is imported only when a PNG is asked for.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freemem.core.cleaner import Cleaner
from freemem.core.errors import ConfigError
from freemem.io import dumps_json, write_text_atomic
from freemem.tokens import CachedCounter, cached_counter

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.progress import Progress

__all__ = [
    "MODEL_CLEANERS",
    "SHARED_DATA_NAMES",
    "ReportingCleaner",
    "Stopwatch",
    "add_cleaner_arguments",
    "add_common_arguments",
    "bench_counter",
    "cleaner_factory",
    "default_data",
    "ensure_positive",
    "finish",
    "load_cleaner",
    "machine_info",
    "make_console",
    "markdown_table",
    "mean",
    "percentile",
    "print_table",
    "progress_bar",
    "pyplot",
    "resolve_data",
    "save_figure",
    "share",
    "time_summary",
    "write_json",
]

#: Where the shared data folder is looked for, relative to the working directory and to the repository.
SHARED_DATA_NAMES: tuple[str, ...] = ("../shared/data", "shared/data")


# ------------------------------------------------------------------------------------------------ data


def _data_roots() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    roots: list[Path] = []
    for base in (Path.cwd(), repo):
        for name in SHARED_DATA_NAMES:
            candidate = (base / name).resolve()
            if candidate not in roots:
                roots.append(candidate)
    return roots


def default_data(relative: str) -> Path | None:
    """``relative`` (e.g. ``"tau_bench_airline/tau1_gpt-4o-airline.json"``) inside the shared data folder,
    found next to the working directory or the repository; None when it is not there."""
    for root in _data_roots():
        path = root / relative
        if path.exists():
            return path
    return None


def resolve_data(value: str | os.PathLike[str] | None, default_relative: str) -> Path:
    """The ``--data`` path: the given one (which must exist) or the shared-data default.

    Raises:
        ConfigError: the path does not exist, or none was given and the default is not there.
    """
    if value:
        path = Path(value)
        if not path.exists():
            raise ConfigError(f"--data {value}: no such file or directory")
        return path
    found = default_data(default_relative)
    if found is None:
        raise ConfigError(f"--data is required (the default ../shared/data/{default_relative} is not there)")
    return found


def add_common_arguments(p: argparse.ArgumentParser, *, default_relative: str, what: str,
                         counter: str = "o200k_base", png: bool = True) -> None:
    """The options every benchmark takes: ``--data``, ``--json``, ``--limit``, ``--counter`` (and ``--plot``,
    alias ``--png``)."""
    p.add_argument("--data", metavar="PATH",
                   help=f"{what} (default: ../shared/data/{default_relative} when it exists)")
    p.add_argument("--json", metavar="OUT", help="write the full results as JSON")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N items")
    p.add_argument("--counter", default=counter,
                   help=f"token counter: qwen3, o200k_base, cl100k_base, approx, auto (default: {counter})")
    if png:
        p.add_argument("--plot", "--png", dest="png", metavar="OUT", help="write a PNG figure (needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")


def bench_counter(name: str) -> CachedCounter:
    """A cached token counter by name (shared by every policy of a run, so counts are comparable)."""
    return cached_counter(name, max_entries=200_000)


#: ``--cleaner`` names of the model cleaners (they need ``--base-url`` and ``--model``).
MODEL_CLEANERS: tuple[str, ...] = ("free-module", "prompted")


def add_cleaner_arguments(p: argparse.ArgumentParser) -> None:
    """``--cleaner`` and the model cleaner's options (``--base-url``, ``--model``, ``--adapter``, timeouts)."""
    p.add_argument("--cleaner", default="heuristic",
                   help="freemem cleaner: 'heuristic' (default), 'free-module' (FreeModuleCleaner), 'prompted' "
                        "(PromptedCleaner over ChatOpenAI), or 'package.module:Class'")
    g = p.add_argument_group("model cleaner", "for --cleaner free-module or prompted: an OpenAI-compatible server "
                                              "(llama.cpp, SGLang, vLLM; `freemem serve` starts one)")
    g.add_argument("--base-url", metavar="URL", help="the server's base URL, e.g. http://127.0.0.1:8080/v1")
    g.add_argument("--model", dest="cleaner_model", metavar="NAME",
                   help="the served model's name (GET /v1/models lists them)")
    g.add_argument("--adapter", dest="cleaner_adapter", metavar="NAME", default=None,
                   help="free-module: the LoRA adapter's served name (default: none, a plain instruction model)")
    g.add_argument("--cleaner-timeout", type=float, metavar="S", default=None,
                   help="seconds per model request (default: FreeModuleCleaner's, 600: fits CPU serving)")
    g.add_argument("--cleaner-max-tokens", type=int, metavar="N", default=None,
                   help="most tokens of one answer (default: the cleaner's, 1024)")


class ReportingCleaner(Cleaner):
    """A model cleaner that prints one line per call (model calls take minutes on CPUs: a run must show it is
    alive). Everything else -- ``name``, ``max_freed_share``, ``max_commands``... -- is the wrapped cleaner's."""

    def __init__(self, cleaner: Cleaner, console: Console | None, label: str = "") -> None:
        self.cleaner = cleaner
        self.console = console
        self.label = label
        self.calls = 0

    # What FreeMemory reads of a cleaner (the Cleaner base declares it): the wrapped cleaner's.
    name = property(lambda self: self.cleaner.name)  # type: ignore[assignment]
    max_freed_share = property(lambda self: self.cleaner.max_freed_share)  # type: ignore[assignment]
    max_commands = property(lambda self: self.cleaner.max_commands)  # type: ignore[assignment]
    repeated = property(lambda self: self.cleaner.repeated)  # type: ignore[assignment]
    in_process = property(lambda self: self.cleaner.in_process)  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cleaner, name)

    def _report(self, proposal: Any, started: float) -> Any:
        self.calls += 1
        if self.console is not None:
            usage = getattr(proposal, "usage", {}) or {}
            note = getattr(proposal, "note", None)
            self.console.log(
                f"{self.label}{getattr(self.cleaner, 'name', 'cleaner')} call {self.calls}: "
                f"{usage.get('prompt_tokens', '?')} prompt + {usage.get('completion_tokens', '?')} completion "
                f"tokens in {time.perf_counter() - started:.1f} s, {len(getattr(proposal, 'commands', []))} "
                f"command(s)" + (f" ({note})" if note else ""), highlight=False)
        return proposal

    def propose(self, context: Any) -> Any:
        started = time.perf_counter()
        return self._report(self.cleaner.propose(context), started)

    async def apropose(self, context: Any) -> Any:
        started = time.perf_counter()
        return self._report(await self.cleaner.apropose(context), started)


def _model_cleaner(args: argparse.Namespace) -> Cleaner:
    """The ``free-module`` or ``prompted`` cleaner from the model cleaner options."""
    base_url = getattr(args, "base_url", None)
    model = getattr(args, "cleaner_model", None)
    if not base_url or not model:
        raise ConfigError(f"--cleaner {args.cleaner} needs --base-url URL and --model NAME (the served model)")
    timeout = getattr(args, "cleaner_timeout", None)
    max_tokens = getattr(args, "cleaner_max_tokens", None)
    if timeout is not None and timeout <= 0 or max_tokens is not None and max_tokens < 1:
        raise ConfigError("--cleaner-timeout must be > 0 and --cleaner-max-tokens >= 1")
    if args.cleaner == "free-module":
        from freemem.cleaners.free_module import FreeModuleCleaner

        options: dict[str, Any] = {}
        if timeout is not None:
            options["timeout"] = timeout
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        return FreeModuleCleaner(base_url, model=model, adapter=getattr(args, "cleaner_adapter", None), **options)
    if getattr(args, "cleaner_adapter", None):
        raise ConfigError("--adapter is for --cleaner free-module; for prompted, name the model itself (--model)")
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ConfigError("--cleaner prompted needs langchain-openai (pip install langchain-openai)") from None
    from freemem.cleaners.free_module import DEFAULT_TIMEOUT
    from freemem.cleaners.prompted import PromptedCleaner

    # No retries: a retried request would wait behind the abandoned one, which a local server keeps computing.
    # langchain-openai sends max_tokens as max_completion_tokens, which llama.cpp's server ignores: the bound
    # goes in the request body as max_tokens too (SGLang and vLLM read either).
    bound = max_tokens or 1024
    chat = ChatOpenAI(model=model, base_url=base_url, api_key="EMPTY", temperature=0, max_retries=0,
                      timeout=timeout or DEFAULT_TIMEOUT, max_tokens=bound, extra_body={"max_tokens": bound})
    return PromptedCleaner(chat, timeout=timeout or DEFAULT_TIMEOUT)


def cleaner_factory(args: argparse.Namespace, *, counter: Any, console: Console | None = None
                    ) -> Callable[[int | None], Cleaner | None]:
    """``budget -> cleaner`` for a benchmark's ``--cleaner`` options (:func:`add_cleaner_arguments`).

    A model cleaner is built once (its endpoint state -- the structured-output form it detected, its circuit
    breaker -- carries across the run) and reports every call on ``console``; the heuristic (None:
    :class:`~freemem.FreeMemory` builds it) and ``package.module:Class`` cleaners are built per budget.

    Raises:
        ConfigError: a malformed spec, or a model cleaner without ``--base-url``/``--model``.
    """
    spec = getattr(args, "cleaner", None)
    if spec in MODEL_CLEANERS:
        shared = ReportingCleaner(_model_cleaner(args), console)
        return lambda budget: shared  # type: ignore[return-value]
    for option in ("base_url", "cleaner_model", "cleaner_adapter"):
        if getattr(args, option, None):
            raise ConfigError(f"--{option.replace('cleaner_', '').replace('_', '-')} is for --cleaner "
                              f"{' or '.join(MODEL_CLEANERS)}")
    load_cleaner(spec, budget=None, counter=counter)  # fail now, not in the middle of a run
    return lambda budget: load_cleaner(spec, budget=budget, counter=counter)


def load_cleaner(spec: str | None, *, budget: int | None, counter: Any) -> Cleaner | None:
    """The cleaner named by ``spec``: None or ``"heuristic"`` for the default :class:`HeuristicCleaner`
    (returned as None: :class:`~freemem.FreeMemory` builds it with the budget and counter), or
    ``"package.module:Class"``; the class is called with ``budget=`` and ``counter=`` when it takes them.
    (The model cleaners, ``free-module`` and ``prompted``, need a server: :func:`cleaner_factory`.)

    Raises:
        ConfigError: the spec is malformed, or the module or class cannot be loaded.
    """
    if spec in (None, "", "heuristic"):
        return None
    if spec in MODEL_CLEANERS:
        raise ConfigError(f"--cleaner {spec} needs --base-url URL and --model NAME")
    if ":" not in spec:
        raise ConfigError(f"--cleaner {spec!r}: expected 'heuristic', 'free-module', 'prompted' or "
                          "'package.module:Class'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--cleaner {spec!r}: {exc}") from None
    try:
        return cls(budget=budget, counter=counter)
    except TypeError:
        pass
    try:
        return cls()
    except TypeError as exc:
        hint = ("; a model cleaner: --cleaner free-module (or prompted) --base-url URL --model NAME"
                if "endpoint" in str(exc) or "model" in str(exc) else "")
        raise ConfigError(f"--cleaner {spec!r}: cannot be built without arguments ({exc}){hint}") from None


# ------------------------------------------------------------------------------------------ numbers


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, None for no values."""
    vals = list(values)
    return statistics.fmean(vals) if vals else None


def share(part: float, whole: float) -> float | None:
    """``part / whole``, None when ``whole`` is 0."""
    return part / whole if whole else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def time_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """Mean, median, p95 and max of durations, in milliseconds."""
    if not seconds:
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "max_ms": None, "n": 0}
    ms = [s * 1000.0 for s in seconds]
    return {"mean_ms": statistics.fmean(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "max_ms": max(ms), "n": len(ms)}


class Stopwatch:
    """Accumulates the wall time of the ``with`` blocks it times (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus_usable": len(affinity(0)) if affinity else os.cpu_count(), "cpus_total": os.cpu_count()}


# ------------------------------------------------------------------------------------------- output


def _cell(value: Any, fmt: str | None = None) -> str:
    if value is None:
        return "–"
    if fmt:
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (cells already formatted as strings, or formatted plainly)."""
    cells = [[_cell(c) for c in row] for row in rows]
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([head, rule, *body])


def make_console(quiet: bool = False) -> Console:
    from rich.console import Console

    return Console(quiet=quiet, width=max(160, Console().width))


def print_table(console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table with rich in markdown style (so it can be pasted into a document)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.MARKDOWN, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_cell(c) for c in row])
    console.print(table)


@contextmanager
def progress_bar(console: Console, enabled: bool = True) -> Iterator[Progress | None]:
    """A transient rich progress bar, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        yield bar


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (``-`` writes to stdout), atomically (creating the folder), so a failed
    run never leaves a half-written result where an earlier one was."""
    text = dumps_json(data, default=str) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)


def finish(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``--json`` (and tell the dispatcher it is written) and return ``result``."""
    out = getattr(args, "json", None)
    if out:
        write_json(out, result)
        args._json_written = True
    return result


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib (pip install 'freemem[plot]')") from None
    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` as a PNG (creating the folder) and close it."""
    from freemem.io import atomic_path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as staged:  # a failed save never leaves half a PNG where the last one was
        fig.savefig(staged, dpi=130, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def ensure_positive(name: str, value: int | None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None or a positive number."""
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be positive")

