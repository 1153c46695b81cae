"""``freemem clean FILE``: prune a transcript or trace file, keep its format, report what was freed.

Nothing is written unless everything can be: both destinations (``--out`` and ``--json``) are checked before
any cleaning, both files are rendered in memory, then written together by :func:`freemem.io.write_files`
(each staged in a temporary file and renamed over its destination), so ``--out`` equal to the input can
never leave the input damaged, and a ``--json`` that fails never leaves a fresh ``--out`` behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from freemem.config import RoundPolicy
from freemem.core.context import answer_line_ranges
from freemem.core.errors import ConfigError
from freemem.core.pairing import pairing_violations
from freemem.io import FORMATS, check_destination, dumps_json, read_document, render_document, write_files

__all__ = ["add_arguments", "clean_file", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="transcript (OpenAI-format JSON/JSONL), trace JSONL, or plain text")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: auto-detect)")
    p.add_argument("--field", help="text field of trace records (default: auto: text, trace, output, code, ...)")
    p.add_argument("--budget", type=int, help="token budget per conversation/trace: prune further until it fits")
    p.add_argument("--marker", help="replacement for removed spans ('{tokens}' is replaced by the count)")
    p.add_argument("--counter", default="auto", help="token counter: auto, qwen3, o200k_base, cl100k_base, approx")
    p.add_argument("--max-share", type=float, default=None, help="cap on the share of editable text removed per round")
    p.add_argument("--out", "-o", help="where to write the pruned file (default: FILE.freemem.EXT)")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write a machine-readable report ('-' for stdout)")
    p.add_argument("--quiet", "-q", action="store_true", help="no table, no progress bar")


def _answer_line(text: str) -> str | None:
    found = answer_line_ranges(text)
    return text[found[-1][0]:found[-1][1]] if found else None


def _out_path(path: str | Path, out: str | Path | None) -> Path:
    src = Path(path)
    return Path(out) if out else src.with_name(f"{src.stem}.freemem{src.suffix or '.txt'}")


def clean_file(path: str | Path, *, format: str = "auto", field: str | None = None, budget: int | None = None,
               marker: str | None = None, counter: str = "auto", max_share: float | None = None,
               out: str | Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Prune every conversation/trace in ``path``; write the result (atomically); return the report."""
    out_path = check_destination(_out_path(path, out), "pruned file")
    data, report = _clean(path, format=format, field=field, budget=budget, marker=marker, counter=counter,
                          max_share=max_share, out_path=out_path, progress=progress)
    write_files([(out_path, data)])
    return report


def _clean(path: str | Path, *, format: str, field: str | None, budget: int | None, marker: str | None,
           counter: str, max_share: float | None, out_path: Path, progress: Any) -> tuple[bytes, dict[str, Any]]:
    """Clean ``path`` in memory: the bytes of the pruned file and the report."""
    from freemem.cleaners.heuristic import HeuristicCleaner
    from freemem.memory import FreeMemory

    if budget is not None and budget <= 0:
        raise ConfigError("--budget must be a positive number of tokens")
    doc = read_document(path, format=format, text_field=field)
    # No archive here: a fold would drop messages with no way back.
    memory = FreeMemory(counter=counter, budget=budget, fold=False,
                        rounds=RoundPolicy(marker=marker, max_freed_share=max_share))
    if isinstance(memory.cleaner, HeuristicCleaner):
        memory.cleaner.counter = memory.counter
    records: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    task = progress.add_task("cleaning", total=len(doc.items)) if progress is not None else None
    for item in doc.items:
        t0 = time.perf_counter()
        if item.kind == "messages":
            result = memory.clean(item.value, trigger="freemem clean")
            new_value = result.messages
            extra = {"messages": len(item.value), "pairing_violations": len(pairing_violations(new_value))}
        else:
            result = memory.clean_text(item.value, question=item.question, trigger="freemem clean")
            new_value = result.text
            answer = _answer_line(item.value)
            extra = {"answer_line": answer, "answer_kept": None if answer is None else answer in new_value}
        if result.changed:
            item.put(new_value)
        ev = result.event
        reasons: dict[str, int] = {}
        for r in ev.rejected:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        records.append({
            "item": item.label, "kind": item.kind, "tokens_before": ev.tokens_before, "tokens_after": ev.tokens_after,
            "tokens_freed": ev.tokens_freed, "applied": ev.applied, "rejected": len(ev.rejected),
            "rejected_by_reason": reasons, "rejections": ev.rejected, "refused": ev.refused, "error": ev.error,
            "seconds": round(time.perf_counter() - t0, 4), **extra,
        })
        if progress is not None:
            progress.advance(task)
    src = Path(path)
    data = render_document(doc)
    before = sum(r["tokens_before"] for r in records)
    after = sum(r["tokens_after"] for r in records)
    return data, {
        "file": str(src), "out": str(out_path), "format": doc.format, "counter": memory.counter.name,
        "budget": budget, "items": len(records), "tokens_before": before, "tokens_after": after,
        "tokens_freed": before - after, "freed_share": round((before - after) / before, 4) if before else 0.0,
        "applied": sum(r["applied"] for r in records), "rejected": sum(r["rejected"] for r in records),
        "pairing_violations": sum(r.get("pairing_violations", 0) for r in records),
        "answers_lost": sum(1 for r in records if r.get("answer_kept") is False),
        "over_budget": None if budget is None else sum(1 for r in records if r["tokens_after"] > budget),
        "seconds": round(time.perf_counter() - t_all, 3), "records": records,
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    # Both destinations are checked before the work, and written together after it.
    out_path = check_destination(_out_path(args.file, args.out), "pruned file")
    json_path = None if args.json_out in (None, "-") else check_destination(args.json_out, "--json report")
    if json_path is not None and json_path.resolve() == out_path.resolve():
        raise ConfigError(f"--out and --json name the same file ({out_path})")
    console = Console(stderr=args.json_out == "-")
    show = not args.quiet
    options = {"format": args.format, "field": args.field, "budget": args.budget, "marker": args.marker,
               "counter": args.counter, "max_share": args.max_share, "out_path": out_path}
    if show:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            data, report = _clean(args.file, progress=progress, **options)
    else:
        data, report = _clean(args.file, progress=None, **options)
    files: list[tuple[Path, bytes]] = [(out_path, data)]
    text = dumps_json(report) + "\n" if args.json_out else ""
    if json_path is not None:
        files.append((json_path, text.encode("utf-8")))
    write_files(files)
    if args.json_out == "-":
        sys.stdout.write(text)
    if show:
        table = Table(title=f"freemem clean — {Path(report['file']).name}", show_header=False)
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        rows = [
            ("format / counter", f"{report['format']} / {report['counter']}"),
            ("items", str(report["items"])),
            ("tokens before → after", f"{report['tokens_before']:,} → {report['tokens_after']:,}"),
            ("freed", f"{report['tokens_freed']:,} ({report['freed_share']:.1%})"),
            ("commands applied / rejected", f"{report['applied']} / {report['rejected']}"),
            ("pairing violations", str(report["pairing_violations"])),
            ("answer lines lost", str(report["answers_lost"])),
            ("seconds", f"{report['seconds']:.2f}"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        console.print(table)
        if report["over_budget"]:
            console.print(f"[yellow]{report['over_budget']} item(s) still over the budget "
                          "(their protected part alone is larger)[/yellow]")
        console.print(f"wrote {report['out']}")
    return 0
