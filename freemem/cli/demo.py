"""``freemem demo``: a long tool-use session replayed through a real ``create_agent`` agent, with freemem.

The agent is a real ``langchain.agents.create_agent`` graph with real tools and :class:`FreeMemoryMiddleware`
(heuristic cleaner) and a real checkpointer (SQLite file by default, Redis with ``--redis URL``). Only its
model is recorded: it replays a coding session the project ships (``freemem/data/demo_session.json``: three
user turns, ~40 model calls, whole source files, pytest runs, a service log stuck in a retry loop). The tools
return the recorded outputs.

Live, it draws the context sent to the model at every call — without freemem (the whole history) and with it
(the pruned history, persisted in the checkpointer) — the sawtooth; then a summary of tokens saved, and with
``--plot out.png`` the same chart as an image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from freemem.core.optional import require_extra

require_extra("langgraph", "langgraph", "langchain", "langchain_core", "langgraph.checkpoint.sqlite",
              what="freemem demo")

from langchain_core.tools import InjectedToolCallId, tool

from freemem.core.errors import ConfigError, FormatError
from freemem.core.io import atomic_path, check_destination, write_text_atomic

__all__ = ["DemoResult", "add_arguments", "load_session", "run", "run_demo"]

SESSION_RESOURCE = "data/demo_session.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=int, default=12_000,
                   help="token budget of the messages sent to the model (default 12,000)")
    p.add_argument("--counter", default="auto", help="token counter: auto, qwen3, o200k_base, cl100k_base, approx")
    p.add_argument("--session", type=Path, help="replay another recorded session (same JSON shape)")
    p.add_argument("--db", type=Path, help="SQLite checkpoint file (default: a temporary file)")
    p.add_argument("--redis", metavar="URL", help="persist the thread in Redis instead (redis://host:port/0)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="write the chart (needs matplotlib: freemem[plot])")
    p.add_argument("--delay", type=float, default=None,
                   help="seconds to pause per model call so the chart can be watched (default 0.05 on a terminal)")
    p.add_argument("--json", type=Path, help="write the per-call figures and the summary as JSON")


# -- the recorded session ---------------------------------------------------------------------------------
def load_session(path: Path | None = None) -> dict[str, Any]:
    """The recorded session: ``{"system", "turns": [{"user", "steps": [{"assistant", "tool_calls": [{"name",
    "args", "output"}]}], "final"}]}``; the shipped one when ``path`` is None."""
    try:
        if path is None:
            text = resources.files("freemem").joinpath(SESSION_RESOURCE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        session = json.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"session file not found: {exc.filename or path}") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"session file is not JSON: {exc}") from None
    if not isinstance(session, dict) or not isinstance(session.get("turns"), list) or not session["turns"]:
        raise FormatError("session file needs a non-empty 'turns' list")
    for i, turn in enumerate(session["turns"]):
        if not isinstance(turn, dict) or "user" not in turn or "final" not in turn:
            raise FormatError(f"turn {i}: needs 'user' and 'final'")
        for j, step in enumerate(turn.get("steps", [])):
            if not step.get("tool_calls") or any("name" not in c or "output" not in c for c in step["tool_calls"]):
                raise FormatError(f"turn {i} step {j}: needs tool_calls with 'name' and 'output'")
    return session


def _call_id(turn: int, step: int, k: int) -> str:
    return f"call_{turn}_{step}_{k}"


def _scripted(session: dict[str, Any]) -> tuple[list[Any], dict[str, str], list[list[Any]]]:
    """The model's replies, the recorded tool outputs by call id, and — per model call — the full unpruned
    history the agent would send without freemem."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    replies: list[Any] = []
    outputs: dict[str, str] = {}
    baselines: list[list[Any]] = []
    history: list[Any] = [SystemMessage(session.get("system") or "")]
    for t, turn in enumerate(session["turns"]):
        history.append(HumanMessage(turn["user"]))
        for s, step in enumerate(turn.get("steps", [])):
            calls = [{"name": c["name"], "args": c.get("args", {}), "id": _call_id(t, s, k), "type": "tool_call"}
                     for k, c in enumerate(step["tool_calls"])]
            reply = AIMessage(content=step.get("assistant", ""), tool_calls=calls)
            baselines.append(list(history))
            replies.append(reply)
            history.append(reply)
            for k, c in enumerate(step["tool_calls"]):
                outputs[_call_id(t, s, k)] = c["output"]
                history.append(ToolMessage(c["output"], tool_call_id=_call_id(t, s, k), name=c["name"]))
        final = AIMessage(content=turn["final"])
        baselines.append(list(history))
        replies.append(final)
        history.append(final)
    return replies, outputs, baselines


def _replay_model(replies: list[Any], on_request: Any) -> Any:
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    class ReplayModel(FakeMessagesListChatModel):
        """Replays the recorded replies and reports every request it is sent."""

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ReplayModel:
            return self

        def _generate(self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            if self.i >= len(self.responses):
                raise ConfigError("the recorded session has no more model replies")
            on_request(self.i, list(messages))
            reply = self.responses[self.i].model_copy(deep=True)
            self.i += 1
            return ChatResult(generations=[ChatGeneration(message=reply)])

        @property
        def _llm_type(self) -> str:
            return "freemem-demo-replay"

    return ReplayModel(responses=replies)


def _tools(outputs: dict[str, str]) -> list[Any]:
    """Real tools whose results are the recorded outputs (looked up by the injected tool call id)."""
    def recorded(call_id: str) -> str:
        return outputs.get(call_id, f"error: no recorded output for {call_id}")

    @tool
    def bash(command: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Run a shell command in the repository and return its output."""
        return recorded(tool_call_id)

    @tool
    def read_file(path: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Return the contents of a file in the repository."""
        return recorded(tool_call_id)

    @tool
    def edit_file(path: str, old: str, new: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Replace ``old`` with ``new`` in a file (append when ``old`` is empty)."""
        return recorded(tool_call_id)

    return [bash, read_file, edit_file]


# -- checkpointers ----------------------------------------------------------------------------------------
#: Key prefix of the demo's threads and archive in Redis (``freemem thread list --key-prefix freemem-demo``).
REDIS_PREFIX = "freemem-demo"


@contextlib.contextmanager
def _checkpointer(args: argparse.Namespace) -> Iterator[tuple[Any, str, Any]]:
    """(checkpointer, where, archive or None)."""
    if args.redis:
        from freemem.redis import RedisArchive, RedisSaver

        with RedisSaver.from_url(args.redis, key_prefix=REDIS_PREFIX) as saver, \
                RedisArchive.from_url(args.redis, key_prefix=REDIS_PREFIX) as archive:
            yield saver, f"Redis {args.redis}", archive
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    with contextlib.ExitStack() as stack:
        if args.db:
            path = Path(args.db)
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="freemem-demo-"))) / "demo.sqlite"
        saver = stack.enter_context(SqliteSaver.from_conn_string(str(path)))
        yield saver, f"SQLite {path if args.db else '(temporary file)'}", None


# -- the run ----------------------------------------------------------------------------------------------
@dataclass
class DemoResult:
    """Per model call: tokens sent without freemem (whole history) and with it; plus the summary."""

    without: list[int] = field(default_factory=list)
    with_freemem: list[int] = field(default_factory=list)
    turn_starts: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def run_demo(args: argparse.Namespace, *, on_call: Any = None) -> DemoResult:
    """Replay the session through a real agent with freemem; ``on_call(result)`` after every model call."""
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage

    from freemem.core.pairing import pairing_violations
    from freemem.langgraph import LEDGER_KEY, FreeMemoryMiddleware
    from freemem.memory import FreeMemory

    if args.budget is not None and args.budget < 1000:
        raise ConfigError("--budget must be at least 1,000 tokens")
    session = load_session(args.session)
    replies, outputs, baselines = _scripted(session)
    # The budget is of what the model is sent: the system prompt create_agent adds comes out of it.
    system = session.get("system") or None
    reserve = FreeMemory(counter=args.counter, fold=False).count_messages(
        [{"role": "system", "content": system}]) if system else 0
    memory = FreeMemory(counter=args.counter, budget=args.budget - reserve if args.budget else None)
    result = DemoResult()
    violations = 0

    def on_request(i: int, messages: list[Any]) -> None:
        nonlocal violations
        result.without.append(memory.count_messages(baselines[i]))
        result.with_freemem.append(memory.count_messages(messages))
        violations += len(pairing_violations(messages))
        if on_call is not None:
            on_call(result)

    model = _replay_model(replies, on_request)
    middleware = FreeMemoryMiddleware(memory)
    t0 = time.perf_counter()
    with _checkpointer(args) as (saver, where, archive):
        memory.archive = archive  # with Redis, what was freed is kept: `freemem thread show/restore`
        agent = create_agent(model, _tools(outputs), system_prompt=system,
                             middleware=[middleware], checkpointer=saver)
        thread = f"demo-{int(time.time() * 1000)}"
        config = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        answers = []
        for turn in session["turns"]:
            result.turn_starts.append(len(result.with_freemem))
            out = agent.invoke({"messages": [HumanMessage(turn["user"])]}, config)
            answers.append(out["messages"][-1].content)
        state = agent.get_state(config).values
        persisted = memory.count_messages(state["messages"])
        unpruned = memory.count_messages(baselines[-1][1:] + [replies[-1]])
        ledger = state.get(LEDGER_KEY, [])
    elapsed = time.perf_counter() - t0
    stats = middleware.stats
    sent_without, sent_with = sum(result.without), sum(result.with_freemem)
    result.summary = {
        "model_calls": len(result.with_freemem),
        "turns": len(session["turns"]),
        "budget": args.budget,
        "counter": memory.counter.name,
        "checkpointer": where,
        "thread_id": thread,
        "peak_context_without": max(result.without),
        "peak_context_with": max(result.with_freemem),
        "calls_over_budget_without": sum(t > args.budget for t in result.without),
        "calls_over_budget_with": sum(t > args.budget for t in result.with_freemem),
        "tokens_sent_without": sent_without,
        "tokens_sent_with": sent_with,
        "tokens_saved": sent_without - sent_with,
        "saved_share": round(1 - sent_with / sent_without, 4) if sent_without else 0.0,
        "cleaning_rounds": stats.cleans,
        "commands_applied": sum(e["applied"] for e in ledger),
        "commands_rejected": sum(len(e["rejected"]) for e in ledger),
        "cleaner_errors": stats.errors,
        "pairing_violations": violations,
        "freemem_ms_per_call": round(1000 * stats.time_s / max(1, stats.steps), 2),
        "persisted_thread_tokens": persisted,
        "unpruned_thread_tokens": unpruned,
        "final_answers_kept": answers == [t["final"] for t in session["turns"]],
        "seconds": round(elapsed, 2),
    }
    return result


# -- display ----------------------------------------------------------------------------------------------
def _chart(result: DemoResult, budget: int, total_calls: int, width: int, height: int = 14) -> Any:
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


def _live_view(result: DemoResult, budget: int, total: int, width: int) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    n = len(result.with_freemem)
    status = Text()
    if n:
        status.append(f"model call {n}/{total}   ", style="bold")
        status.append(f"with freemem {result.with_freemem[-1]:,} tokens   ", style="green")
        status.append(f"without {result.without[-1]:,} tokens", style="grey50")
    return Panel(Group(_chart(result, budget, total, width - 4), status),
                 title="context sent to the model, per call", border_style="blue")


def _summary_table(s: dict[str, Any]) -> Any:
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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    # Destinations are checked before the session runs, so a bad path never costs a whole replay.
    for dest, what in ((args.plot, "--plot chart"), (args.json, "--json report")):
        if dest:
            check_destination(dest, what)
    console = Console()
    session = load_session(args.session)
    total = sum(len(t.get("steps", [])) + 1 for t in session["turns"])
    delay = args.delay if args.delay is not None else (0.05 if console.is_terminal else 0.0)
    console.print(f"[bold]freemem demo[/] — {session.get('title', 'recorded session')}: "
                  f"{len(session['turns'])} user turns, {total} model calls, a real create_agent agent with "
                  f"FreeMemoryMiddleware (heuristic cleaner, budget {args.budget:,} tokens).")
    width = min(console.width, 120)
    result: DemoResult
    with Live(console=console, refresh_per_second=20, transient=False) as live:
        def on_call(r: DemoResult) -> None:
            live.update(_live_view(r, args.budget, total, width))
            if delay:
                time.sleep(delay)

        result = run_demo(args, on_call=on_call)
        live.update(_live_view(result, args.budget, total, width))
    console.print()
    s = result.summary
    console.print(_summary_table(s))
    console.print(
        f"[bold green]tokens saved: {s['tokens_saved']:,} of {s['tokens_sent_without']:,} "
        f"({100 * s['saved_share']:.1f}%)[/] across {s['model_calls']} model calls; "
        f"{s['cleaning_rounds']} cleaning rounds applied {s['commands_applied']} deletions "
        f"({s['commands_rejected']} rejected), {s['pairing_violations']} tool-pairing violations, "
        f"final answers {'kept' if s['final_answers_kept'] else 'CHANGED'}; freemem cost "
        f"{s['freemem_ms_per_call']} ms per call; thread persisted in {s['checkpointer']} "
        f"(counter {s['counter']}, {s['seconds']} s).")
    if args.redis:
        console.print(f"inspect or undo what was freed: freemem thread show {s['thread_id']} --redis {args.redis} "
                      f"--key-prefix {REDIS_PREFIX}")
    if args.plot:
        _plot(result, args.budget, args.plot)
        console.print(f"chart written to {args.plot}")
    if args.json:
        payload = {"summary": s, "without": result.without, "with_freemem": result.with_freemem,
                   "turn_starts": result.turn_starts}
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


def _plot(result: DemoResult, budget: int, path: Path) -> None:
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


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="freemem demo")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
