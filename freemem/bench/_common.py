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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freemem.errors import ConfigError
from freemem.io import dumps_json, write_text_atomic
from freemem.tokens import CachedCounter, get_counter

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.progress import Progress

    from freemem.cleaners.base import Cleaner

__all__ = [
    "SHARED_DATA_NAMES",
    "Stopwatch",
    "add_common_arguments",
    "bench_counter",
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
    base = get_counter(name)
    return base if isinstance(base, CachedCounter) else CachedCounter(base, max_entries=200_000)


def load_cleaner(spec: str | None, *, budget: int | None, counter: Any) -> Cleaner | None:
    """The cleaner named by ``spec``: None or ``"heuristic"`` for the default :class:`HeuristicCleaner`
    (returned as None: :class:`~freemem.FreeMemory` builds it with the budget and counter), or
    ``"package.module:Class"``; the class is called with ``budget=`` and ``counter=`` when it takes them.

    Raises:
        ConfigError: the spec is malformed, or the module or class cannot be loaded.
    """
    if spec in (None, "", "heuristic"):
        return None
    if ":" not in spec:
        raise ConfigError(f"--cleaner {spec!r}: expected 'heuristic' or 'package.module:Class'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--cleaner {spec!r}: {exc}") from None
    try:
        return cls(budget=budget, counter=counter)
    except TypeError:
        return cls()


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

