"""``freemem bench long``: is the context bounded at any length, and does each step stay O(new tokens)?

Each session (:mod:`freemem_bench.sessions`: a synthetic tool-use session of thousands of calls, a synthetic
chat of thousands of short turns, MemoryBank's users as one chat, the OpenHands trajectories concatenated) is
replayed the way :class:`~freemem.langgraph.FreeMemoryMiddleware` runs, without a graph: at every step the
new messages are added to the state with LangGraph's own ``add_messages`` reducer, then
``CleanStep(memory, state_fields=True).run(state)`` — the middleware's step — measures, maybe cleans, and
returns an update, which is applied with the state's real reducers (``add_messages`` for the messages, so
``RemoveMessage`` and ``REMOVE_ALL_MESSAGES`` work; ``bounded_ledger`` for the ledger; the newest value for
the tokens mark and for any other key). The memory is what a user builds, ``FreeMemory(budget=...)`` with the
named counter, so the bench measures whatever the engine does (delete inside messages, fold whole units, ...)
without knowing how.

Reported per session:

* steps, **steps over budget** (the messages in state after the step count more than the budget), final
  and peak context tokens, final message count; counted with a separate counter of the same tokenizer, so
  measuring never warms freemem's own cache;
* **time per step** spent in ``CleanStep.run`` only (``time.perf_counter`` around the call): the mean over
  steps 100-300 and over the last 200 steps, and their ratio (flat, i.e. O(new tokens), means close to 1),
  the p99, and the cleans and folds counted from the ledger events of the updates (a fold: an event with a
  truthy ``folds``/``folded`` entry);
* **process RSS** before and after the replay (every session message is built before the first reading, and
  the reference index adds no copy of the text, so the growth is the engine's state and caches); the objects
  alive before the replay are frozen (``gc.freeze``), so the cyclic collector's full passes over the bench's
  own data stay out of freemem's step times;
* **reference retention** against ``trim_messages`` at the same budget, with the definition of
  ``freemem bench transcripts`` (:func:`~freemem_bench.transcripts.reference_strings`): at sampled steps
  (every k-th, or the first after it whose next reply re-uses anything), the strings the next assistant
  message re-uses from the unpruned context before it, and the share of them present in freemem's context
  and in ``trim_messages``' output. The synthetic sessions keep their own phrasing out of it (the tool
  session's stock phrases are in its system prompt, the chat's replies are facts or a word), so what counts
  is identifiers and facts;
* for MemoryBank, per probing question, whether the key strings of the fact it asks about are still in the
  final context, for freemem and for ``trim_messages``.

A session stops early when it has run ``--max-seconds`` (the result says so): an unbounded context makes each
step slower than the last, and a benchmark that never ends reports nothing.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from freemem.config import Triggers
from freemem.core.errors import ConfigError
from freemem.memory import FreeMemory
from freemem.tokens import get_counter
from freemem_bench._common import (
    add_common_arguments,
    bench_counter,
    default_data,
    ensure_positive,
    finish,
    machine_info,
    make_console,
    markdown_table,
    mean,
    percentile,
    print_table,
    progress_bar,
    pyplot,
    save_figure,
)
from freemem_bench.sessions import (
    MEMORYBANK_TUNE_USERS,
    SPLITS,
    Session,
    TextIndex,
    chat_session,
    memorybank_chats,
    memorybank_session,
    openhands_session,
    tool_session,
)
from freemem_bench.transcripts import MIN_REFERENCE_CHARS, TrimPolicy, message_pieces, reference_strings

__all__ = [
    "ANSWER_POLICIES",
    "DEFAULT_SESSIONS",
    "F1_COLUMNS",
    "QA_COLUMNS",
    "RECALL_K",
    "RECALL_PAGE_CHARS",
    "SESSIONS",
    "add_arguments",
    "apply_update",
    "f1_rows",
    "fold_count",
    "qa_rows",
    "recall_page",
    "replay",
    "run",
    "trim_input",
]

SESSIONS: tuple[str, ...] = ("tools", "chat", "memorybank", "openhands", "memorybank-chats")
#: What ``--sessions`` runs when not given (``memorybank-chats`` is asked for by name).
DEFAULT_SESSIONS: tuple[str, ...] = ("tools", "chat", "memorybank", "openhands")
MEMORYBANK = "memorybank_chat_en"
OPENHANDS = "openhands_swebench_verified_claude35/trajectories.jsonl"
#: Steps of the early timing window (0-based, end excluded) and the length of the late one.
EARLY = (100, 300)
LATE = 200
_SEP = "\x00"  # joins message pieces: no shared substring can span two pieces
#: trim_messages gets the system message, the first human message and a tail of this many budgets' worth of
#: messages (see trim_input).
TRIM_TAIL_BUDGETS = 4


# --------------------------------------------------------------------------------------------- state


def _last_value(left: Any, right: Any) -> Any:
    """LangGraph's default channel rule (and freemem's tokens reducer): the newest value wins."""
    return left if right is None else right


def apply_update(state: dict[str, Any], update: dict[str, Any] | None) -> None:
    """Apply a step's update to ``state`` with the reducers a ``FreeMemoryAgentState`` graph uses."""
    from langgraph.graph.message import add_messages

    from freemem.langgraph import LEDGER_KEY, bounded_ledger

    for key, value in (update or {}).items():
        if key == "messages":
            state[key] = add_messages(state.get(key) or [], value)
        elif key == LEDGER_KEY:
            state[key] = bounded_ledger(state.get(key), value)
        else:
            state[key] = _last_value(state.get(key), value)


def fold_count(event: dict[str, Any]) -> int:
    """How many folds a ledger event reports (0 for a round that only deleted inside messages)."""
    value = event.get("folds") or event.get("folded")
    if not value:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    return 1


def _rss_mb() -> float:
    """Resident set size of this process, in MB (``/proc/self/statm``; peak RSS where there is no /proc)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------------------------------------- replay


class _Pieces:
    """What the model reads of each message (``message_pieces`` joined), computed once per original message;
    edited or new messages of the state are read again at each sample (and only the current state's are
    kept, so this never holds more than the session and one state)."""

    def __init__(self, session: Session) -> None:
        self.original: dict[int, tuple[Any, str]] = {}
        for msg in [*session.head, *(m for step in session.steps for m in step)]:
            self.original[id(msg)] = (msg, _SEP.join(message_pieces(msg)))
        self._other: dict[int, tuple[Any, str]] = {}

    def of(self, msg: Any) -> str:
        hit = self.original.get(id(msg))
        if hit is not None and hit[0] is msg:
            return hit[1]
        return _SEP.join(message_pieces(msg))

    def context(self, messages: Sequence[Any]) -> str:
        other: dict[int, tuple[Any, str]] = {}
        parts = []
        for msg in messages:
            hit = self.original.get(id(msg))
            if hit is None or hit[0] is not msg:
                hit = self._other.get(id(msg))
                if hit is None or hit[0] is not msg:
                    hit = (msg, _SEP.join(message_pieces(msg)))
                other[id(msg)] = hit
            parts.append(hit[1])
        self._other = other
        return _SEP.join(parts)


#: The policies a real model answers from, in the order they are asked (each context's questions in a row).
ANSWER_POLICIES = ("freemem", "trim", "none")


def trim_input(full: list[Any], prefix_tokens: list[int], budget: int) -> list[Any]:
    """The messages to give ``trim_messages``: its ``"last"`` strategy keeps the system message plus the
    newest messages that fit the budget, so anything more than a budget's worth of tokens from the end can
    never be kept. Passing the system message, the first human message and a tail of TRIM_TAIL_BUDGETS
    budgets' worth of messages gives the same output as the whole history, without an O(n) call per sample
    (O(n^2) over a long session)."""
    total = prefix_tokens[-1]
    start = bisect.bisect_right(prefix_tokens, total - TRIM_TAIL_BUDGETS * budget)
    head_end = next((i + 1 for i, m in enumerate(full) if getattr(m, "type", "") == "human"), 1)
    if start <= head_end:
        return list(full)
    head = [m for m in full[:head_end] if getattr(m, "type", "") in ("system", "human")]
    return [*head, *full[start:]]


def replay(session: Session, *, budget: int, counter: str, samples: int, max_seconds: float | None,
           min_ref_chars: int = MIN_REFERENCE_CHARS, on_step: Callable[[], None] | None = None,
           memory_options: dict[str, Any] | None = None, answerer: Any = None,
           answer_questions: int | None = None, answer_policies: Sequence[str] = ANSWER_POLICIES) -> dict[str, Any]:
    """Replay ``session`` through freemem as the middleware runs it; the figures described in the module
    docstring. A session with probing questions runs with an :class:`~freemem.archives.InMemoryArchive` (what
    freemem removes is archived and searchable, as with the ``recall`` tool); ``memory_options`` go to
    :class:`~freemem.memory.FreeMemory` as they are (for experiments; the bench's figures use none). With an
    ``answerer`` (:class:`~freemem_bench.answers.LocalAnswerer`), a real model answers the first
    ``answer_questions`` probing questions (all when None) from the final context of each of ``answer_policies``
    (a subset of :data:`ANSWER_POLICIES`)."""
    from freemem.archives import InMemoryArchive
    from freemem.langgraph import CleanStep

    # What a user builds: FreeMemory(budget=...) with a counter by name (FreeMemory adds its own cache), and an
    # archive the agent can search where the session asks questions about its past.
    archive = InMemoryArchive() if session.probes else None
    memory = FreeMemory(counter=get_counter(counter), budget=budget, archive=archive, **(memory_options or {}))
    if archive is not None:
        memory.recall_hint = True  # as when the agent is given the recall tool
    step = CleanStep(memory, state_fields=True)
    measure = FreeMemory(counter=bench_counter(counter), triggers=Triggers(every_tokens=None, on_loop=False)).count_messages
    trim = TrimPolicy(budget, measure)
    pieces = _Pieces(session)
    system_text = _SEP.join(pieces.of(m) for m in session.head if getattr(m, "type", "") == "system")
    # The unpruned history's text, whole (built before the RSS reading), and where each step ends in it.
    texts = [pieces.of(m) for m in session.head]
    ends: list[int] = []
    length = sum(len(t) for t in texts) + max(0, len(texts) - 1)
    for batch in session.steps:
        for msg in batch:
            texts.append(pieces.of(msg))
            length += len(texts[-1]) + (1 if len(texts) > 1 else 0)
        ends.append(length)
    joined = _SEP.join(texts)
    bits = 1 << 16
    while bits < 8 * len(joined) and bits < 1 << 27:  # ~8 bits per window: few false "maybe"s
        bits <<= 1
    index = TextIndex(joined, min_len=min_ref_chars, bits=bits)
    del texts, joined
    every = max(1, len(session.steps) // max(1, samples))

    full: list[Any] = list(session.head)
    prefix_tokens: list[int] = []
    running = 0
    for msg in full:
        running += measure([msg])
        prefix_tokens.append(running)
    state: dict[str, Any] = {"messages": [], "freemem_ledger": [], "freemem_tokens_at_last_clean": 0}
    apply_update(state, {"messages": list(session.head)})
    thread = f"long-{session.name}"

    gc.collect()
    # The session's messages (all built up front) are the bench's data, not freemem's state: frozen, so the
    # cyclic collector's full passes over them do not land in freemem's step times (unfrozen after).
    gc.freeze()
    rss_before = _rss_mb()
    tokens: list[int] = []
    seconds: list[float] = []
    cleans = folds = 0
    refs_total = kept_freemem = kept_trim = 0
    retention_samples: list[dict[str, Any]] = []
    stopped: str | None = None
    pending = False
    t_start = time.perf_counter()
    for s, batch in enumerate(session.steps):
        apply_update(state, {"messages": batch})
        t0 = time.perf_counter()
        update = step.run(state, thread=thread)
        seconds.append(time.perf_counter() - t0)
        if update:
            for event in update.get("freemem_ledger") or []:
                cleans += 1
                folds += fold_count(event)
        apply_update(state, update)
        context = state["messages"]
        tokens.append(measure(context))
        for msg in batch:
            full.append(msg)
            running += measure([msg])
            prefix_tokens.append(running)
        index.reveal(ends[s])
        nxt = session.steps[s + 1] if s + 1 < len(session.steps) else []
        reply = next((m for m in nxt if getattr(m, "type", "") == "ai"), None)
        if s % every == every - 1:
            pending = True
        if pending and reply is not None:
            # A sample is taken at every k-th step, or at the first step after it whose next reply re-uses
            # something (most chat replies re-use nothing: the samples go to those that do).
            refs = reference_strings(index, reply, system_text, min_ref_chars)  # type: ignore[arg-type]
            if refs:
                pending = False
                fm_text = pieces.context(context)
                trimmed = trim.prune([], trim_input(full, prefix_tokens, budget))
                tr_text = _SEP.join(pieces.of(m) for m in trimmed)
                k_fm = sum(1 for r in refs if r in fm_text)
                k_tr = sum(1 for r in refs if r in tr_text)
                refs_total += len(refs)
                kept_freemem += k_fm
                kept_trim += k_tr
                retention_samples.append({"step": s, "references": len(refs), "freemem": k_fm, "trim": k_tr})
        if on_step is not None:
            on_step()
        if max_seconds and time.perf_counter() - t_start > max_seconds and s + 1 < len(session.steps):
            stopped = f"time limit: {max_seconds:g} s after {s + 1:,} of {len(session.steps):,} steps"
            break
    wall = time.perf_counter() - t_start
    gc.unfreeze()
    gc.collect()
    rss_after = _rss_mb()

    probes = _probes(session, state["messages"], full, prefix_tokens, budget, trim, pieces,
                     archive=archive, thread=thread, measure=measure, answerer=answerer,
                     answer_questions=answer_questions, answer_policies=answer_policies)
    ms = [1000 * x for x in seconds]
    early = ms[EARLY[0]:EARLY[1]]
    # The last LATE steps, never overlapping the early window (shorter sessions get a shorter late window).
    late_start = max(EARLY[1], len(ms) - LATE)
    late = ms[late_start:]
    early_mean, late_mean = mean(early), mean(late)
    ratio = late_mean / early_mean if early_mean and late_mean is not None else None
    med_early, med_late = percentile(early, 50), percentile(late, 50)
    return {
        "session": session.name,
        "note": session.note,
        "budget": budget,
        "steps_planned": len(session.steps),
        "steps": len(seconds),
        "stopped": stopped,
        "messages_replayed": len(full),
        "steps_over_budget": sum(1 for t in tokens if t > budget),
        "final_tokens": tokens[-1] if tokens else 0,
        "peak_tokens": max(tokens, default=0),
        "final_messages": len(state["messages"]),
        "cleans": cleans,
        "folds": folds,
        "time": {
            "mean_ms": mean(ms),
            "early_window": list(EARLY),
            "early_steps": len(early),
            "mean_ms_early": early_mean,
            "late_window": [late_start, len(ms)],
            "late_steps": len(late),
            "mean_ms_late": late_mean,
            "late_over_early": ratio,
            "flat": None if ratio is None else ratio <= 1.5,
            # Medians of the same windows: a shared machine's hiccups move means more than medians.
            "median_ms_early": med_early,
            "median_ms_late": med_late,
            "median_late_over_early": med_late / med_early if med_early and med_late is not None else None,
            "p99_ms": percentile(ms, 99),
            "max_ms": max(ms, default=None),
            "freemem_s": sum(seconds),
            "wall_s": wall,
        },
        "rss_mb": {"before": rss_before, "after": rss_after, "growth": rss_after - rss_before},
        "retention": {
            "every": every,
            "samples": len(retention_samples),
            "references": refs_total,
            "freemem_kept": kept_freemem,
            "trim_kept": kept_trim,
            "freemem": kept_freemem / refs_total if refs_total else None,
            "trim": kept_trim / refs_total if refs_total else None,
            "per_sample": retention_samples,
        },
        "probes": probes,
        "tokens_per_step": tokens,
        "ms_per_step": [round(x, 3) for x in ms],
    }


#: What one ``recall(query=...)`` call shows: the best ``RECALL_K`` hits, as many as fit ``RECALL_PAGE_CHARS``
#: (the recall tool's default page; each hit costs its text plus a line naming its id, speaker and date).
RECALL_K = 10
RECALL_PAGE_CHARS = 4000
_HIT_LINE_CHARS = 60


def recall_page(archive: Any, thread: str, question: str) -> tuple[str, set[str], float]:
    """What one ``recall(query=question)`` returns, as the bench counts it: ``(text, refs, seconds)`` of the
    best hits of ``archive.search(thread, question, RECALL_K)`` that fit in ``RECALL_PAGE_CHARS``."""
    t0 = time.perf_counter()
    hits = archive.search(thread, question, k=RECALL_K)
    seconds = time.perf_counter() - t0
    texts: list[str] = []
    refs: set[str] = set()
    used = 0
    for hit in hits:
        cost = len(hit.text) + _HIT_LINE_CHARS
        if used + cost > RECALL_PAGE_CHARS:
            break
        used += cost
        texts.append(hit.text)
        refs.add(hit.ref)
    return _SEP.join(texts), refs, seconds


def _fold_tokens(context: Sequence[Any], measure: Callable[[Sequence[Any]], int]) -> int:
    """Tokens of the fold messages (digests) in ``context``."""
    from freemem.core.views import message_views

    return sum(measure([m]) for m, v in zip(context, message_views(context), strict=True) if v.fold is not None)


def _probes(session: Session, context: Sequence[Any], full: list[Any], prefix_tokens: list[int], budget: int,
            trim: TrimPolicy, pieces: _Pieces, *, archive: Any = None, thread: str = "",
            measure: Callable[[Sequence[Any]], int] | None = None, answerer: Any = None,
            answer_questions: int | None = None,
            answer_policies: Sequence[str] = ANSWER_POLICIES) -> dict[str, Any] | None:
    """Per probing question: are its key strings in the final context (freemem, ``trim_messages``, no pruning),
    and, for freemem, are they (or the answering turn) reachable with one ``recall(query=question)``."""
    if not session.probes:
        return None
    fm_text = pieces.context(context)
    trimmed = trim.prune([], trim_input(full, prefix_tokens, budget))
    tr_text = _SEP.join(pieces.of(m) for m in trimmed)
    all_text = pieces.context(full)
    rows = []
    search_ms: list[float] = []
    for p in session.probes:
        fm = [k for k in p.keys if k in fm_text]
        tr = [k for k in p.keys if k in tr_text]
        row = {"user": p.user, "question": p.question, "evidence_date": p.evidence_date, "keys": p.keys,
               "key_kind": p.key_kind,
               "freemem_keys_kept": len(fm), "trim_keys_kept": len(tr),
               "freemem_all_kept": len(fm) == len(p.keys), "trim_all_kept": len(tr) == len(p.keys),
               "none_all_kept": all(k in all_text for k in p.keys)}
        if archive is not None:
            page, refs, seconds = recall_page(archive, thread, p.question)
            search_ms.append(1000 * seconds)
            in_page = all(k in fm_text or k in page for k in p.keys)
            row["recall_evidence"] = bool(refs & set(p.evidence_ids))
            row["recall_keys"] = in_page
            row["freemem_reachable"] = row["freemem_all_kept"] or in_page or row["recall_evidence"]
        rows.append(row)
    n = len(rows)
    keys = sum(len(r["keys"]) for r in rows)
    out = {
        "method": "key strings of the turn that best matches each question (content words, the named day); "
                  "MemoryBank gives no answers, so this is a heuristic",
        "questions": n,
        "questions_with_named_keys": sum(1 for r in rows if r["key_kind"] == "names"),
        "freemem_all_kept": sum(r["freemem_all_kept"] for r in rows),
        "trim_all_kept": sum(r["trim_all_kept"] for r in rows),
        "none_all_kept": sum(r["none_all_kept"] for r in rows),
        # The questions whose keys are names, titles, places (not the rare-word fallback): what a digest can hold.
        "named_freemem_all_kept": sum(r["freemem_all_kept"] for r in rows if r["key_kind"] == "names"),
        "named_trim_all_kept": sum(r["trim_all_kept"] for r in rows if r["key_kind"] == "names"),
        "freemem_key_share": sum(r["freemem_keys_kept"] for r in rows) / keys if keys else None,
        "trim_key_share": sum(r["trim_keys_kept"] for r in rows) / keys if keys else None,
        "digest_tokens": _fold_tokens(context, measure) if measure is not None else None,
        "per_question": rows,
    }
    if answerer is not None:
        contexts = {"freemem": context, "trim": trimmed, "none": full}
        out["answers"] = _answer(answerer, session, rows, {p: contexts[p] for p in answer_policies},
                                 answer_questions)
    if archive is not None:
        out["freemem_reachable"] = sum(r["freemem_reachable"] for r in rows)
        out["recall"] = {"k": RECALL_K, "page_chars": RECALL_PAGE_CHARS, "archive": type(archive).__name__,
                         "search_ms_p50": percentile(search_ms, 50), "search_ms_p95": percentile(search_ms, 95)}
    return out


def _answer(answerer: Any, session: Session, rows: list[dict[str, Any]], contexts: dict[str, Sequence[Any]],
            limit: int | None) -> dict[str, Any]:
    """A real model answers the first ``limit`` probing questions from each context of ``contexts`` (policy name ->
    messages, in :data:`ANSWER_POLICIES` order), all questions of one context in a row (llama.cpp reuses the
    shared prefix); token F1 against the gold answer (MemoryBank: the key strings joined, a heuristic gold)."""
    from freemem_bench.answers import token_f1

    probes = list(zip(session.probes, rows, strict=True))[:limit]
    policies = [name for name in ANSWER_POLICIES if name in contexts]
    f1: dict[str, list[float]] = {name: [] for name in policies}
    named: dict[str, list[float]] = {name: [] for name in policies}
    for name in policies:
        for probe, row in probes:
            reply = answerer.answer(contexts[name], probe.question, label=f"{session.name} {name}")
            score = token_f1(reply, " ".join(probe.keys))
            row.setdefault("answers", {})[name] = {"answer": reply, "f1": round(score, 4)}
            f1[name].append(score)
            if probe.key_kind == "names":
                named[name].append(score)
    return {"questions": len(probes), "gold": "the key strings joined",
            "f1": {name: mean(v) for name, v in f1.items()},
            "f1_named_keys": {name: mean(v) for name, v in named.items()},
            "named_questions": sum(1 for probe, _row in probes if probe.key_kind == "names"),
            "policies": policies, "sums": {name: sum(v) for name, v in f1.items()},
            "named_sums": {name: sum(v) for name, v in named.items()}}


# ----------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, default_relative="", what=f"the data folder holding {MEMORYBANK}/ and {OPENHANDS}")
    p.add_argument("--sessions", default=",".join(DEFAULT_SESSIONS),
                   help=f"comma-separated list from {','.join(SESSIONS)} (default: {','.join(DEFAULT_SESSIONS)})")
    p.add_argument("--tool-calls", type=int, default=10_000, help="tool calls of the synthetic tool session")
    p.add_argument("--chat-turns", type=int, default=2_000, help="turns of the synthetic chat")
    p.add_argument("--budget", type=int, default=16_000, help="budget of the tool-use sessions (default 16000)")
    p.add_argument("--chat-budget", default="4000",
                   help="budget of the chat sessions, or a comma-separated list: each chat runs at each (default 4000)")
    p.add_argument("--split", choices=SPLITS, default="held-out",
                   help=f"memorybank-chats: the users that tuned the chat defaults (tune: the first "
                        f"{MEMORYBANK_TUNE_USERS}), the others (held-out, the default) or all")
    p.add_argument("--users-per-chat", type=int, default=4, help="memorybank-chats: users per chat (default 4)")
    g = p.add_argument_group("answer model", "a real local model answers each probing question from each "
                                             "policy's final context (llama.cpp, CPU); token F1 against the gold")
    g.add_argument("--answer-model", metavar="GGUF",
                   help="a GGUF chat model (../shared/models/get-qwen-coder 0.5b|1.5b prints one)")
    g.add_argument("--answer-threads", type=int, default=2, help="CPU threads of the answer model (default 2)")
    g.add_argument("--answer-ctx", type=int, default=20_480,
                   help="its context window: the longest chat unpruned, plus the question (default 20480)")
    g.add_argument("--answer-questions", type=int, metavar="N",
                   help="answer only the first N questions of each session (default: all)")
    g.add_argument("--answer-log", metavar="FILE",
                   help="append one JSON line per answer to FILE as it comes (a stopped run keeps its answers)")
    g.add_argument("--answer-policies", default=",".join(ANSWER_POLICIES), metavar="LIST",
                   help=f"the contexts the model answers from, comma-separated from {','.join(ANSWER_POLICIES)} "
                        f"(default: all; greedy answers from an unchanged context are the same in every run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic sessions")
    p.add_argument("--samples", type=int, default=200, help="retention samples per session (default 200)")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="stop a session after this many seconds (0: never; default 300)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (400 tool calls, 400 chat turns, 2 users / 2 trajectories, 20 samples)")


def _budgets(text: Any) -> list[int]:
    """``--chat-budget``: one budget or a comma-separated list of positive ints."""
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--chat-budget {text!r}: give a number of tokens or a comma-separated list") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError("--chat-budget must be positive")
    return values


def _answer_policies(text: Any) -> list[str]:
    """``--answer-policies``: a comma-separated subset of :data:`ANSWER_POLICIES`, in their order."""
    names = {x.strip() for x in str(text).split(",") if x.strip()}
    if not names or names - set(ANSWER_POLICIES):
        raise ConfigError(f"--answer-policies {text!r}: choose from {','.join(ANSWER_POLICIES)}")
    return [p for p in ANSWER_POLICIES if p in names]


def _sessions(args: argparse.Namespace) -> tuple[list[tuple[Session, int]], list[str]]:
    names = [n.strip() for n in str(args.sessions).split(",") if n.strip()]
    unknown = [n for n in names if n not in SESSIONS]
    if unknown or not names:
        raise ConfigError(f"--sessions: choose from {', '.join(SESSIONS)}")
    root = Path(args.data) if args.data else None
    if root is not None and not root.is_dir():
        raise ConfigError(f"--data {args.data}: no such directory")
    limit = args.limit or (2 if args.quick else None)
    chat_budgets = _budgets(args.chat_budget)
    out: list[tuple[Session, int]] = []
    notes: list[str] = []
    for name in names:
        if name == "tools":
            out.append((tool_session(args.tool_calls, seed=args.seed), args.budget))
        elif name == "chat":
            out.extend((chat_session(args.chat_turns, seed=args.seed), b) for b in chat_budgets)
        else:
            relative = OPENHANDS if name == "openhands" else MEMORYBANK
            path = root / relative if root is not None else default_data(relative)
            if path is None or not path.exists():
                notes.append(f"{name}: skipped, {relative} not found"
                             + (f" under {root}" if root is not None else " (give --data DIR)"))
                continue
            if name == "memorybank":
                out.extend((memorybank_session(path, users=limit), b) for b in chat_budgets)
            elif name == "memorybank-chats":
                chats = memorybank_chats(path, users_per_chat=args.users_per_chat, split=args.split)
                chats = chats[:limit] if limit else chats
                out.extend((chat, b) for b in chat_budgets for chat in chats)
            else:
                out.append((openhands_session(path, limit=limit), args.budget))
    return out, notes


F1_COLUMNS = ("session", "questions", "F1 freemem", "F1 trim", "F1 no pruning", "named-key questions",
              "F1 freemem (named)", "F1 trim (named)", "F1 no pruning (named)")


def f1_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per session a model answered from, and one per budget over all of them."""
    rows: list[list[str]] = []
    totals: dict[int, list[Any]] = {}

    def line(label: str, n: int, sums: dict[str, float], m: int, named: dict[str, float]) -> list[str]:
        def f(total: float, k: int) -> str:
            return f"{total / k:.3f}" if k else "–"

        return [label, str(n), *(f(sums[p], n) if p in sums else "–" for p in ANSWER_POLICIES), str(m),
                *(f(named[p], m) if p in named else "–" for p in ANSWER_POLICIES)]

    for r in results:
        a = (r.get("probes") or {}).get("answers")
        if not a:
            continue
        rows.append(line(f"{r['session']} @{r['budget']:,}", a["questions"], a["sums"], a["named_questions"],
                         a["named_sums"]))
        t = totals.setdefault(r["budget"], [0, {}, 0, {}, 0])
        t[0] += a["questions"]
        t[2] += a["named_questions"]
        t[4] += 1
        for p in a["sums"]:  # the policies answered (--answer-policies), the same in every session of a run
            t[1][p] = t[1].get(p, 0.0) + a["sums"][p]
            t[3][p] = t[3].get(p, 0.0) + a["named_sums"][p]
    if sum(t[4] for t in totals.values()) > len(totals):
        for budget, t in sorted(totals.items()):
            rows.append(line(f"all {t[4]} @{budget:,}", t[0], t[1], t[2], t[3]))
    return rows


QA_COLUMNS = ("session", "questions", "gold present freemem", "trim", "no pruning", "reachable freemem",
              "named keys: freemem", "trim", "digest tok", "search p95 ms")


def _qa_row(label: str, n: int, fm: int, tr: int, none: int, reach: int | None, named: tuple[int, int, int],
            digest: str, p95: str) -> list[str]:
    def share(k: int | None, of: int) -> str:
        return "–" if k is None or not of else f"{k / of:.3f} ({k}/{of})"

    m, nf, nt = named
    return [label, str(n), share(fm, n), share(tr, n), share(none, n), share(reach, n), share(nf, m), share(nt, m),
            digest, p95]


def qa_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per session with probing questions, and one per budget over all of them."""
    rows: list[list[str]] = []
    totals: dict[int, list[Any]] = {}
    for r in results:
        p = r.get("probes")
        if not p:
            continue
        reach = p.get("freemem_reachable")
        p95 = p.get("recall", {}).get("search_ms_p95")
        named = (p["questions_with_named_keys"], p["named_freemem_all_kept"], p["named_trim_all_kept"])
        rows.append(_qa_row(f"{r['session']} @{r['budget']:,}", p["questions"], p["freemem_all_kept"],
                            p["trim_all_kept"], p["none_all_kept"], reach, named, str(p["digest_tokens"]),
                            "–" if p95 is None else f"{p95:.1f}"))
        t = totals.setdefault(r["budget"], [0, 0, 0, 0, 0, [], 0, 0, 0, 0])
        t[7] += named[0]
        t[8] += named[1]
        t[9] += named[2]
        t[0] += p["questions"]
        t[1] += p["freemem_all_kept"]
        t[2] += p["trim_all_kept"]
        t[3] += p["none_all_kept"]
        t[4] += reach or 0
        t[5].append(p["digest_tokens"] or 0)
        t[6] += 1
    if sum(t[6] for t in totals.values()) > len(totals):
        for budget, t in sorted(totals.items()):
            rows.append(_qa_row(f"all {t[6]} @{budget:,}", t[0], t[1], t[2], t[3], t[4], (t[7], t[8], t[9]),
                                f"{mean(t[5]):.0f} (mean)", ""))
    return rows


TABLE_COLUMNS = ("session", "steps", "over budget", "final tok", "peak tok", "msgs", "cleans", "folds",
                 "ms 100-300", "ms last 200", "late/early", "p99 ms", "RSS +MB", "ret. freemem", "ret. trim")


def _row(r: dict[str, Any]) -> list[str]:
    t, ret = r["time"], r["retention"]

    def f(x: float | None, spec: str) -> str:
        return "–" if x is None else format(x, spec)

    steps = f"{r['steps']:,}" + ("" if r["stopped"] is None else f"/{r['steps_planned']:,}")
    return [
        f"{r['session']} @{r['budget']:,}", steps, f"{r['steps_over_budget']:,}", f"{r['final_tokens']:,}",
        f"{r['peak_tokens']:,}", f"{r['final_messages']:,}", f"{r['cleans']:,}", f"{r['folds']:,}",
        f(t["mean_ms_early"], ".2f"), f(t["mean_ms_late"], ".2f"),
        f(t["late_over_early"], ".2f") + ("x" if t["late_over_early"] is not None else ""),
        f(t["p99_ms"], ".1f"), f(r["rss_mb"]["growth"], "+.1f"), f(ret["freemem"], ".3f"), f(ret["trim"], ".3f"),
    ]


def plot(results: Sequence[dict[str, Any]], path: str) -> None:
    """Context tokens per step for each session (budget line), and freemem's time per step below."""
    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 6.4), squeeze=False)
    for k, r in enumerate(results):
        top, bottom = axes[0][k], axes[1][k]
        steps = range(1, len(r["tokens_per_step"]) + 1)
        top.plot(steps, r["tokens_per_step"], color="tab:green", linewidth=0.8, label="freemem")
        top.axhline(r["budget"], color="red", linewidth=0.8, linestyle=":", label=f"budget {r['budget']:,}")
        top.set_title(f"{r['session']}: context tokens per step", fontsize=9)
        top.set_xlabel("step")
        top.legend(fontsize=7)
        bottom.plot(steps, r["ms_per_step"], color="tab:blue", linewidth=0.5)
        bottom.set_yscale("log")
        bottom.set_title(f"{r['session']}: freemem ms per step", fontsize=9)
        bottom.set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.tool_calls = min(args.tool_calls, 400)
        args.chat_turns = min(args.chat_turns, 400)
        args.samples = min(args.samples, 20)
    for name in ("--tool-calls", "--chat-turns", "--budget", "--samples", "--limit", "--users-per-chat"):
        ensure_positive(name, getattr(args, name[2:].replace("-", "_")))
    if args.max_seconds is not None and args.max_seconds < 0:
        raise ConfigError("--max-seconds must be 0 (no limit) or positive")
    console = make_console(args.quiet or args.json == "-")
    console.width = max(console.width, 210)  # 15 columns: wide enough that no cell is cut
    t0 = time.perf_counter()
    policies = _answer_policies(args.answer_policies)
    sessions, notes = _sessions(args)
    answerer = None
    if getattr(args, "answer_model", None):
        from freemem_bench.answers import LocalAnswerer

        answerer = LocalAnswerer(args.answer_model, n_ctx=args.answer_ctx, threads=args.answer_threads,
                                 log=args.answer_log)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    results: list[dict[str, Any]] = []
    with progress_bar(console, not args.quiet) as bar:
        for session, budget in sessions:
            task = bar.add_task(session.name, total=len(session.steps)) if bar is not None else None
            advance = (lambda t=task: bar.advance(t)) if bar is not None else None
            results.append(replay(session, budget=budget, counter=args.counter, samples=args.samples,
                                  max_seconds=args.max_seconds or None, on_step=advance, answerer=answerer,
                                  answer_questions=args.answer_questions, answer_policies=policies))
    seconds = time.perf_counter() - t0
    rows = [_row(r) for r in results]
    title = f"freemem bench long — {args.counter} counter, time per step in CleanStep.run"
    print_table(console, title, TABLE_COLUMNS, rows)
    for r in results:
        if r["stopped"]:
            console.print(f"[yellow]{r['session']}: {r['stopped']}[/yellow]")
    qa = qa_rows(results)
    if qa:
        print_table(console, "probing questions: all key strings in the final context (gold present), or in "
                    f"context or one recall(query=question) page (reachable: best {RECALL_K} hits within "
                    f"{RECALL_PAGE_CHARS:,} characters, or the answering turn among them)", QA_COLUMNS, qa)
    f1 = f1_rows(results)
    if f1:
        print_table(console, f"answers of {answerer.path.name if answerer else 'the model'} from each policy's "
                    "final context: token F1 against the gold (MemoryBank: its key strings)", F1_COLUMNS, f1)
    console.print(f"{seconds:.0f} s in all")
    result: dict[str, Any] = {
        "benchmark": "long", "counter": args.counter, "seed": args.seed, "quick": bool(args.quick),
        "max_seconds": args.max_seconds or None, "seconds": round(seconds, 2), "machine": machine_info(),
        "skipped": notes, "sessions": results, "table": markdown_table(TABLE_COLUMNS, rows),
        "qa_table": markdown_table(QA_COLUMNS, qa) if qa else None,
        "answer_model": answerer.describe() if answerer is not None else None,
        "f1_table": markdown_table(F1_COLUMNS, f1) if f1 else None,
    }
    if getattr(args, "png", None):
        plot(results, args.png)
        console.print(f"wrote {args.png}")
    return finish(args, result)
