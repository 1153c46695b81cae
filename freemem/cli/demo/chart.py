"""The demo's display: the live terminal chart (rich), the summary table and the PNG chart (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freemem.cli.demo.agent import DemoResult
from freemem.core.errors import ConfigError
from freemem.io import atomic_path

__all__ = ["chart", "live_view", "plot", "summary_table"]

def chart(result: DemoResult, budget: int, total_calls: int, width: int, height: int = 14) -> Any:
    """A terminal bar chart: grey bars without freemem, green with it, a red budget line."""
    from rich.text import Text

    top = max([budget, *result.without, *result.with_freemem, 1])
    cols = max(1, min(total_calls, width - 9))
    per = max(1, -(-total_calls // cols))  # calls per column when the terminal is narrow
    cell = max(1, min(3, (width - 9) // max(1, total_calls)))  # characters per column when it is wide

    def column(values: list[int], c: int) -> int | None:
        chunk = values[c * per:(c + 1) * per]
        return max(chunk) if chunk else None

    budget_row = height - round(budget / top * height)
    text = Text()
    for row in range(height):
        level = top * (height - row) / height
        label = f"{level / 1000:>5.0f}k " if row % 3 == 0 else "       "
        text.append(label, style="dim")
        for c in range(cols):
            w, f = column(result.without, c), column(result.with_freemem, c)
            if f is not None and f >= level - top / height / 2:
                text.append("█" * cell, style="green")
            elif w is not None and w >= level - top / height / 2:
                text.append("▒" * cell, style="grey50")
            elif row == budget_row:
                text.append("─" * cell, style="red")
            else:
                text.append(" " * cell)
        text.append("\n")
    text.append("       " + "".join(("^" if any(c * per <= s < (c + 1) * per for s in result.turn_starts) else " ")
                                    .ljust(cell) for c in range(cols)), style="cyan")
    text.append("\n       ")
    text.append("█ with freemem  ", style="green")
    text.append("▒ without  ", style="grey50")
    text.append("─ budget  ", style="red")
    text.append("^ new user turn", style="cyan")
    if per > 1:
        text.append(f"  (one column = {per} calls)", style="dim")
    return text


def live_view(result: DemoResult, budget: int, total: int, width: int) -> Any:
    """The live panel: the chart and the newest call's figures."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    n = len(result.with_freemem)
    status = Text()
    if n:
        status.append(f"model call {n}/{total}   ", style="bold")
        status.append(f"with freemem {result.with_freemem[-1]:,} tokens   ", style="green")
        status.append(f"without {result.without[-1]:,} tokens", style="grey50")
    return Panel(Group(chart(result, budget, total, width - 4), status),
                 title="context sent to the model, per call", border_style="blue")


def summary_table(s: dict[str, Any]) -> Any:
    """The summary, without and with freemem side by side."""
    from rich.table import Table

    table = Table(title="freemem demo — summary", show_header=True)
    table.add_column("")
    table.add_column("without freemem", justify="right")
    table.add_column("with freemem", justify="right")
    table.add_row("peak context (tokens)", f"{s['peak_context_without']:,}", f"{s['peak_context_with']:,}")
    table.add_row(f"model calls over the {s['budget']:,} budget", f"{s['calls_over_budget_without']}",
                  f"{s['calls_over_budget_with']}")
    table.add_row("tokens sent over the session", f"{s['tokens_sent_without']:,}", f"{s['tokens_sent_with']:,}")
    table.add_row("thread size in the checkpointer", f"{s['unpruned_thread_tokens']:,}",
                  f"{s['persisted_thread_tokens']:,}")
    return table


def plot(result: DemoResult, budget: int, path: Path) -> None:
    """The chart as a PNG (matplotlib), written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'freemem[plot]'") from None
    calls = list(range(1, len(result.with_freemem) + 1))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=120)
    ax.plot(calls, result.without, color="0.55", label="without freemem (whole history)")
    ax.plot(calls, result.with_freemem, color="tab:green", label="with freemem (pruned, persisted)")
    ax.axhline(budget, color="tab:red", linestyle="--", linewidth=1, label=f"budget {budget:,}")
    for s in result.turn_starts:
        ax.axvline(s + 1, color="tab:cyan", linewidth=0.8, alpha=0.6)
    ax.set_xlabel("model call")
    ax.set_ylabel("tokens sent to the model")
    ax.set_title("freemem demo: context per model call")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as temp:  # the chart appears whole or not at all
            fig.savefig(temp)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)
