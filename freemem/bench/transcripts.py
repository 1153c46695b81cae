"""``freemem bench transcripts``: what pruning keeps and what it frees on recorded tool-use trajectories.

Each recorded trajectory (OpenHands, tau-bench, or any OpenAI-format transcript file :func:`freemem.core.io.read_document`
reads) is replayed message by message. Before every assistant message, each policy builds the context it would
send to the model under the same token budget:

* ``freemem`` — :class:`~freemem.FreeMemory` with the :class:`HeuristicCleaner` (or ``--cleaner``), *stateful*
  like the middleware: the pruned state carries forward and the recording's new messages are appended to it;
  it cleans when a trigger fires (over budget, every N new tokens, a loop);
* ``clear_tool_uses`` — LangChain's ``ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=budget)])``:
  before each model call it deep-copies the full history and applies the edit (exactly what its
  ``wrap_model_call`` does), counting tokens with the same counter;
* ``trim`` — ``langchain_core.messages.trim_messages(strategy="last", max_tokens=budget,
  start_on=("human", "ai"), include_system=True)`` on the full history, same counter (the window never opens
  on an orphaned tool result, so tool pairs stay valid); ``trim_human`` (on request) uses ``start_on="human"``;
* ``none`` — the full history.

Per policy it reports the mean share of tokens freed, the peak context, turns over budget (and how many of
freemem's are turns where the protected part alone is over budget), reference retention, pairing violations
and the time spent in the policy per turn.

**Reference retention.** The assistant's next message (its content and the string values of its tool-call
arguments) re-uses strings from the context before it. Those are its *maximal shared substrings* with the
unpruned context: for every end position in the message, the longest substring ending there that occurs in the
context (matching statistics over a suffix automaton of the context, built incrementally as the replay
appends messages), kept when it cannot be extended to the right, is at least 8 characters long, holds a letter
or digit, and does not occur in the system prompt. Retention is the share of those strings still present in
the pruned context.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.bench._common import (
    add_cleaner_arguments,
    add_common_arguments,
    bench_counter,
    cleaner_factory,
    ensure_positive,
    finish,
    load_cleaner,
    machine_info,
    make_console,
    markdown_table,
    mean,
    print_table,
    progress_bar,
    pyplot,
    resolve_data,
    save_figure,
    time_summary,
)
from freemem.core.context import Context
from freemem.core.errors import ConfigError, FormatError
from freemem.core.io import read_document
from freemem.core.pairing import pairing_violations
from freemem.core.prompt_cache import PRICE_MODELS, CacheMeter, PriceModel, get_price_model, message_keys
from freemem.core.views import message_views
from freemem.memory import MESSAGE_OVERHEAD_TOKENS, FreeMemory
from freemem.tokens import CachedCounter

__all__ = [
    "POLICIES",
    "ReferenceIndex",
    "Trajectory",
    "add_arguments",
    "load_trajectories",
    "message_pieces",
    "reference_strings",
    "replay",
    "run",
    "summarize",
]

DEFAULT_DATA = "openhands_swebench_verified_claude35/trajectories.jsonl"
POLICIES: tuple[str, ...] = ("freemem", "clear_tool_uses", "trim", "none")
#: Policies that run only when named in ``--policies``.
EXTRA_POLICIES: tuple[str, ...] = ("trim_human",)
MIN_REFERENCE_CHARS = 8
_SEP = "\x00"  # joins message pieces: no shared substring can span two pieces


# ------------------------------------------------------------------------------------ rendering text


def _arg_values(args: str) -> list[str]:
    """The string (and number) values inside a tool call's JSON arguments; the raw text when not JSON."""
    try:
        value = json.loads(args)
    except (json.JSONDecodeError, TypeError):
        return [args] if args else []
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if v:
                out.append(v)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))

    walk(value)
    return out


def message_pieces(message: Any) -> list[str]:
    """What the model reads of one message (OpenAI dict or LangChain message): its text fields and the
    values of its tool-call arguments (decoded from JSON, so a path or a code line reads the same wherever
    it appears)."""
    (view,) = message_views([message])
    pieces = [text for name, text in view.fields if name != "part" and text]
    for _call_id, _name, args in view.tool_calls:
        pieces.extend(_arg_values(args))
    return pieces


class _PieceCache:
    """``message_pieces`` per message object (kept alive here, so ``id`` is never reused)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, str]] = {}

    def text(self, message: Any) -> str:
        hit = self._cache.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        text = _SEP.join(message_pieces(message))
        self._cache[id(message)] = (message, text)
        return text

    def context_text(self, messages: Iterable[Any]) -> str:
        return _SEP.join(self.text(m) for m in messages)


# -------------------------------------------------------------------------------- shared substrings


class ReferenceIndex:
    """A suffix automaton of a growing text, for maximal shared substrings of a query with that text.

    :meth:`extend` appends text (amortised O(1) per character); :meth:`maximal_matches` runs matching
    statistics over the query in O(len(query)).
    """

    __slots__ = ("_last", "_length", "_link", "_next", "chars")

    def __init__(self) -> None:
        self._next: list[dict[str, int]] = [{}]
        self._link: list[int] = [-1]
        self._length: list[int] = [0]
        self._last = 0
        self.chars = 0

    def extend(self, text: str) -> None:
        """Append ``text`` to the indexed text."""
        nxt, link, length = self._next, self._link, self._length
        last = self._last
        for c in text:
            cur = len(length)
            length.append(length[last] + 1)
            link.append(0)
            nxt.append({})
            p = last
            while p != -1 and c not in nxt[p]:
                nxt[p][c] = cur
                p = link[p]
            if p != -1:
                q = nxt[p][c]
                if length[p] + 1 == length[q]:
                    link[cur] = q
                else:
                    clone = len(length)
                    length.append(length[p] + 1)
                    link.append(link[q])
                    nxt.append(dict(nxt[q]))
                    while p != -1 and nxt[p].get(c) == q:
                        nxt[p][c] = clone
                        p = link[p]
                    link[q] = clone
                    link[cur] = clone
            last = cur
        self._last = last
        self.chars += len(text)

    def matching_lengths(self, query: str) -> list[int]:
        """For each position ``i`` of ``query``, the length of the longest substring ending at ``i`` that
        occurs in the indexed text."""
        nxt, link, length = self._next, self._link, self._length
        v = 0
        n = 0
        out: list[int] = []
        for c in query:
            while v and c not in nxt[v]:
                v = link[v]
                n = length[v]
            step = nxt[v].get(c)
            if step is None:
                v, n = 0, 0
            else:
                v, n = step, n + 1
            out.append(n)
        return out

    def maximal_matches(self, query: str, min_len: int = MIN_REFERENCE_CHARS) -> set[str]:
        """Substrings of ``query`` of at least ``min_len`` characters that occur in the indexed text and
        cannot be extended on either side within ``query`` and still occur."""
        lengths = self.matching_lengths(query)
        out: set[str] = set()
        last = len(lengths) - 1
        for i, n in enumerate(lengths):
            if n >= min_len and (i == last or lengths[i + 1] != n + 1):
                out.add(query[i - n + 1: i + 1])
        return out


def _meaningful(s: str, min_len: int) -> bool:
    return len(s.strip()) >= min_len and any(ch.isalnum() for ch in s)


def reference_strings(index: ReferenceIndex, message: Any, system_text: str,
                      min_len: int = MIN_REFERENCE_CHARS) -> set[str]:
    """Strings the assistant ``message`` re-uses from the indexed context (see the module docstring)."""
    refs: set[str] = set()
    for piece in message_pieces(message):
        refs |= index.maximal_matches(piece, min_len)
    return {s for s in refs if _meaningful(s, min_len) and s not in system_text}


# ------------------------------------------------------------------------------------------- policies


Counter = Callable[[Sequence[Any]], int]


class Policy:
    """A pruning policy under test. :meth:`reset` per trajectory; :meth:`prune` before each model call."""

    name = "policy"
    langchain = False  # reads the LangChain copy of the history

    def reset(self) -> None:
        """Forget the previous trajectory."""

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        """The context to send to the model, given the full recorded history so far."""
        raise NotImplementedError


class NoPruning(Policy):
    name = "none"

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        return list(history)


class FreememPolicy(Policy):
    """freemem as the middleware runs it: a state that carries forward, cleaned when a trigger fires."""

    name = "freemem"

    def __init__(self, make_memory: Callable[[], FreeMemory]) -> None:
        self.make_memory = make_memory
        self.memory = make_memory()
        self.state: list[Any] = []
        self.seen = 0
        self.tokens_at_last_clean = 0
        self.cleans = 0
        self.last_event: Any = None

    def reset(self) -> None:
        self.memory = self.make_memory()
        self.state = []
        self.seen = 0
        self.tokens_at_last_clean = 0
        self.cleans = 0

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        self.state.extend(history[self.seen:])
        self.seen = len(history)
        memory = self.memory
        tokens = memory.count_messages(self.state)
        reason = memory.check(tokens, self.tokens_at_last_clean, _newest_text(self.state))
        self.last_event = None
        if reason is not None:
            result = memory.clean(self.state, trigger=reason, tokens=tokens)
            if result.messages is not None:
                self.state = result.messages
            self.tokens_at_last_clean = result.event.tokens_after
            self.last_event = result.event
            self.cleans += 1
        return list(self.state)


def _newest_text(messages: Sequence[Any]) -> str:
    from freemem.messages import newest_text as newest

    return newest(messages)


class ClearToolUsesPolicy(Policy):
    """LangChain ``ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=budget)])`` per model call."""

    name = "clear_tool_uses"
    langchain = True

    def __init__(self, budget: int, count: Counter, **edit_options: Any) -> None:
        from langchain.agents.middleware.context_editing import ClearToolUsesEdit

        self.edit = ClearToolUsesEdit(trigger=budget, **edit_options)
        self.count = count

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        # ContextEditingMiddleware.wrap_model_call: deepcopy the request's messages, apply each edit.
        edited = copy.deepcopy(lc_history)
        self.edit.apply(edited, count_tokens=self.count)
        return edited


class TrimPolicy(Policy):
    """``trim_messages(strategy="last", include_system=True, start_on=...)`` at the budget.

    ``start_on=("human", "ai")`` (the default here) is the loosest setting that keeps tool pairs valid: the kept
    window never opens on a tool message whose call was cut. ``start_on="human"`` (policy ``trim_human``) is the
    setting LangChain's docs show for chat models that need a human message first; on agent transcripts with one
    task message it keeps far less.
    """

    langchain = True

    def __init__(self, budget: int, count: Counter, *, start_on: str | tuple[str, ...] = ("human", "ai"),
                 name: str = "trim") -> None:
        self.budget = budget
        self.count = count
        self.start_on = start_on
        self.name = name

    def prune(self, history: list[dict[str, Any]], lc_history: list[Any]) -> list[Any]:
        from langchain_core.messages import trim_messages

        return trim_messages(lc_history, max_tokens=self.budget, token_counter=self.count, strategy="last",
                             start_on=self.start_on, include_system=True)


def build_policies(names: Sequence[str], *, budget: int, counter: CachedCounter,
                   cleaner: str | Callable[[int | None], Any] | None, every: int | None) -> list[Policy]:
    """The policies named in ``names``, sharing one token counter. ``cleaner`` is a ``--cleaner`` spec or a
    ``budget -> cleaner`` factory (:func:`freemem.bench._common.cleaner_factory`)."""
    measurer = FreeMemory(counter=counter, every_tokens=None, on_loop=False)
    make_cleaner = cleaner if callable(cleaner) else (lambda b: load_cleaner(cleaner, budget=b, counter=counter))

    def make_memory() -> FreeMemory:
        return FreeMemory(make_cleaner(budget), counter=counter, budget=budget, every_tokens=every)

    out: list[Policy] = []
    for name in names:
        if name == "freemem":
            out.append(FreememPolicy(make_memory))
        elif name == "clear_tool_uses":
            out.append(ClearToolUsesPolicy(budget, measurer.count_messages))
        elif name == "trim":
            out.append(TrimPolicy(budget, measurer.count_messages))
        elif name == "trim_human":
            out.append(TrimPolicy(budget, measurer.count_messages, start_on="human", name="trim_human"))
        elif name == "none":
            out.append(NoPruning())
        else:
            raise ConfigError(f"unknown policy {name!r}; choose from {', '.join(POLICIES + EXTRA_POLICIES)}")
    return out


# --------------------------------------------------------------------------------------------- replay


@dataclass
class Trajectory:
    """One recorded conversation."""

    label: str
    source: str
    messages: list[dict[str, Any]]


@dataclass
class PolicyRun:
    """Per-turn figures of one policy on one trajectory."""

    tokens: list[int] = field(default_factory=list)
    unpruned: list[int] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    pairing: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    #: Over-budget turns where the protected part (plus one marker per editable field) alone is over it:
    #: ``{"turn", "tokens", "floor": {part: tokens, ..., "total": n}}``.
    floor_over: list[dict[str, Any]] = field(default_factory=list)
    #: Per price model: the tokens of each request served from the prompt cache (see :mod:`freemem.core.prompt_cache`).
    cached: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "unpruned": self.unpruned, "refs": self.refs, "kept": self.kept,
                "pairing": self.pairing, "ms": [round(s * 1000, 3) for s in self.seconds],
                "floor_over_turns": self.floor_over, "cached": self.cached}


def load_trajectories(path: Path, limit: int | None = None) -> list[Trajectory]:
    """OpenAI-format conversations from a file, or from every ``.json``/``.jsonl`` file under a folder
    (files that hold no conversations are skipped)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl"))
    out: list[Trajectory] = []
    for file in files:
        try:
            doc = read_document(file)
        except (FormatError, UnicodeDecodeError, json.JSONDecodeError):
            if path.is_file():
                raise
            continue
        for item in doc.items:
            if item.kind != "messages":
                continue
            msgs = [m for m in item.value if isinstance(m, dict)]
            if any(m.get("role") == "assistant" for m in msgs[1:]):
                out.append(Trajectory(item.label, file.name, msgs))
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise ConfigError(f"{path}: no OpenAI-format conversations with assistant turns found")
    return out


def _to_langchain(message: dict[str, Any]) -> Any:
    from langchain_core.messages import convert_to_messages

    clean = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name", "id")}
    if clean.get("content") is None:
        clean["content"] = ""
    return convert_to_messages([clean])[0]


def _floor_tokens(messages: Sequence[Any], memory: FreeMemory) -> dict[str, int]:
    """Tokens freemem cannot go below, by part: protected text (system, first/last human, the most recent
    turn, tool-call arguments, answer lines, pins), tool names, per-message overhead, one marker per editable
    field. ``total`` is their sum."""
    ctx = Context.from_messages(messages, protection=memory.protection)
    parts: dict[str, int] = {}
    for r in ctx.regions:
        if not r.editable and r.kind != "header":
            reason = r.reason or "protected"
            parts[reason] = parts.get(reason, 0) + memory.counter.count(ctx.text[r.start:r.end])
    editable_fields = {(r.message_index, r.field) for r in ctx.regions if r.editable}
    views = ctx.views or []
    parts["tool names"] = sum(memory.counter.count(name) for v in views for _cid, name, _a in v.tool_calls)
    parts["message overhead"] = MESSAGE_OVERHEAD_TOKENS * len(messages)
    parts["markers"] = memory.counter.count("[freemem: 1000 tokens freed]") * len(editable_fields)
    parts["total"] = sum(parts.values())
    return parts


def replay(trajectory: Trajectory, policies: Sequence[Policy], *, budget: int, counter: CachedCounter,
           min_ref_chars: int = MIN_REFERENCE_CHARS, prices: Sequence[PriceModel] = ()) -> dict[str, Any]:
    """Replay one trajectory through every policy; per-turn figures per policy.

    With ``prices``, each policy's requests also go through one prompt cache per price model
    (:class:`~freemem.core.prompt_cache.CacheMeter`: a request's cached prefix is the run of leading messages
    identical to the policy's previous request's); the recordings carry no timestamps, so the cache never
    expires between turns."""
    measurer = FreeMemory(counter=counter, every_tokens=None, on_loop=False)
    want_lc = any(p.langchain for p in policies)
    for p in policies:
        p.reset()
    runs = {p.name: PolicyRun(cached={price.name: [] for price in prices}) for p in policies}
    meters = {p.name: [CacheMeter(price) for price in prices] for p in policies}
    index = ReferenceIndex()
    pieces = _PieceCache()
    history: list[dict[str, Any]] = []
    lc_history: list[Any] = []
    system_text = _SEP.join(pieces.text(m) for m in trajectory.messages if m.get("role") in ("system", "developer"))
    turns = 0
    for i, msg in enumerate(trajectory.messages):
        if msg.get("role") == "assistant" and history:
            turns += 1
            refs = reference_strings(index, msg, system_text, min_ref_chars)
            unpruned = measurer.count_messages(history)
            unpruned_lc = measurer.count_messages(lc_history) if want_lc else unpruned
            for p in policies:
                t0 = time.perf_counter()
                pruned = p.prune(history, lc_history)
                elapsed = time.perf_counter() - t0
                run = runs[p.name]
                tokens = measurer.count_messages(pruned)
                run.seconds.append(elapsed)
                run.tokens.append(tokens)
                run.unpruned.append(unpruned_lc if p.langchain else unpruned)
                if p.name == "none":
                    kept = len(refs)
                else:
                    text = pieces.context_text(pruned)
                    kept = sum(1 for s in refs if s in text)
                run.refs.append(len(refs))
                run.kept.append(kept)
                run.pairing.append(len(pairing_violations(pruned)))
                if prices:
                    keys, sizes = message_keys(pruned), measurer.message_tokens(pruned)
                    for meter in meters[p.name]:
                        run.cached[meter.price.name].append(meter.request(keys, sizes).cached)
                if tokens > budget and isinstance(p, FreememPolicy):
                    floor = _floor_tokens(pruned, p.memory)
                    if floor["total"] > budget:
                        run.floor_over.append({"turn": turns - 1, "tokens": tokens, "floor": floor})
        history.append(msg)
        if want_lc:
            lc_history.append(_to_langchain(msg))
        if i:
            index.extend(_SEP)
        index.extend(pieces.text(msg))
    return {"label": trajectory.label, "source": trajectory.source, "messages": len(trajectory.messages),
            "turns": turns, "policies": {name: run.to_dict() for name, run in runs.items()}}


# ------------------------------------------------------------------------------------------- summary


def summarize(results: Sequence[dict[str, Any]], policy_names: Sequence[str], budget: int,
              prices: Sequence[PriceModel] = ()) -> dict[str, Any]:
    """Per-policy figures over a set of replayed trajectories (with ``prices``: cost under prompt caching,
    see :func:`cache_summary`)."""
    out: dict[str, Any] = {}
    for name in policy_names:
        freed: list[float] = []
        tokens: list[int] = []
        refs = kept = pairing = 0
        per_turn_retention: list[float] = []
        ms: list[float] = []
        floor_over = 0
        per_traj: list[dict[str, Any]] = []
        for r in results:
            run = r["policies"][name]
            t_freed = [1 - t / u for t, u in zip(run["tokens"], run["unpruned"]) if u]
            freed.extend(t_freed)
            tokens.extend(run["tokens"])
            refs += sum(run["refs"])
            kept += sum(run["kept"])
            pairing += sum(run["pairing"])
            per_turn_retention.extend(k / n for k, n in zip(run["kept"], run["refs"]) if n)
            ms.extend(run["ms"])
            floor_over += len(run["floor_over_turns"])
            per_traj.append({
                "label": r["label"], "freed": mean(t_freed), "peak": max(run["tokens"], default=0),
                "over_budget": sum(1 for t in run["tokens"] if t > budget),
                "retention": (sum(run["kept"]) / sum(run["refs"])) if sum(run["refs"]) else None,
            })
        times = time_summary([m / 1000 for m in ms])
        out[name] = {
            "turns": len(tokens),
            "freed_mean": mean(freed),
            "peak_tokens": max(tokens, default=0),
            "turns_over_budget": sum(1 for t in tokens if t > budget),
            "turns_over_budget_protected_floor": floor_over if name == "freemem" else None,
            "trajectories_with_turns_over_budget": sum(1 for t in per_traj if t["over_budget"]),
            "references": refs,
            "references_kept": kept,
            "retention": kept / refs if refs else None,
            "retention_mean_per_turn": mean(per_turn_retention),
            "pairing_violations": pairing,
            "ms_per_turn_mean": times["mean_ms"],
            "ms_per_turn_p50": times["p50_ms"],
            "ms_per_turn_p95": times["p95_ms"],
            "ms_per_turn_max": times["max_ms"],
            "per_trajectory": per_traj,
        }
    if prices:
        cache = cache_summary(results, policy_names, prices)
        for name in policy_names:
            out[name].update(cache[name])
    return out


def cache_summary(results: Sequence[dict[str, Any]], policy_names: Sequence[str],
                  prices: Sequence[PriceModel]) -> dict[str, dict[str, Any]]:
    """Per policy: ``cache`` (per price model: price-weighted input in input-token units, its ratio to no
    pruning's, the cache hit rate), ``prefill_recomputed`` (tokens after each request's first change: what a
    server prefills again) and its ratio to no pruning's. The reference is the ``none`` policy when it ran,
    else the unpruned history under the same cache (nothing ever changes in it, so only new messages are
    recomputed)."""
    out: dict[str, dict[str, Any]] = {}
    for name in policy_names:
        per_model: dict[str, dict[str, Any]] = {}
        for price in prices:
            cost = 0.0
            cached_total = tokens_total = 0
            for r in results:
                run = r["policies"][name]
                for tokens, cached in zip(run["tokens"], run["cached"][price.name]):
                    cost += price.cost(cached, tokens - cached)
                    cached_total += cached
                    tokens_total += tokens
            per_model[price.name] = {"cost": round(cost, 1), "tokens": tokens_total, "cached": cached_total,
                                     "hit_rate": cached_total / tokens_total if tokens_total else None}
        first = per_model[prices[0].name]
        out[name] = {"cache": per_model, "prefill_recomputed": first["tokens"] - first["cached"]}
    reference = out.get("none") or _unpruned_reference(results, prices)
    for name in policy_names:
        for model, figures in out[name]["cache"].items():
            ref_cost = reference["cache"][model]["cost"]
            figures["cost_vs_none"] = figures["cost"] / ref_cost if ref_cost else None
        ref_re = reference["prefill_recomputed"]
        out[name]["prefill_recomputed_vs_none"] = out[name]["prefill_recomputed"] / ref_re if ref_re else None
    return out


def _unpruned_reference(results: Sequence[dict[str, Any]], prices: Sequence[PriceModel]) -> dict[str, Any]:
    """No pruning's cache figures when the ``none`` policy did not run: each request re-reads the previous
    one whole (its unpruned size) and recomputes only what is new."""
    per_model: dict[str, dict[str, Any]] = {}
    recomputed = 0
    for price in prices:
        cost = 0.0
        for r in results:
            run = next(iter(r["policies"].values()))
            previous = 0
            for unpruned in run["unpruned"]:
                cached = min(previous, unpruned)
                cost += price.cost(cached, unpruned - cached)
                if price is prices[0]:
                    recomputed += unpruned - cached
                previous = unpruned
        per_model[price.name] = {"cost": cost}
    return {"cache": per_model, "prefill_recomputed": recomputed}


TABLE_COLUMNS = ("policy", "turns", "freed", "peak tokens", "turns over budget", "retention", "pairing violations",
                 "ms/turn mean", "ms/turn p95")


def table_columns(prices: Sequence[PriceModel] = ()) -> tuple[str, ...]:
    """:data:`TABLE_COLUMNS`, with the cache columns for ``prices`` after the retention column."""
    if not prices:
        return TABLE_COLUMNS
    cache = (*(f"input cost ×none ({p.name})" for p in prices), f"cache hits ({prices[0].name})",
             "prefill recomputed ×none")
    k = TABLE_COLUMNS.index("pairing violations")
    return (*TABLE_COLUMNS[:k], *cache, *TABLE_COLUMNS[k:])


def table_rows(summary: dict[str, Any], prices: Sequence[PriceModel] = ()) -> list[list[str]]:
    rows = []
    k = TABLE_COLUMNS.index("pairing violations")
    for name, s in summary.items():
        over = f"{s['turns_over_budget']}"
        if s.get("turns_over_budget_protected_floor"):
            over += f" ({s['turns_over_budget_protected_floor']} floor)"
        rows.append([
            name, str(s["turns"]), _pct(s["freed_mean"]), f"{s['peak_tokens']:,}", over,
            "–" if s["retention"] is None else f"{s['retention']:.3f}", str(s["pairing_violations"]),
            f"{s['ms_per_turn_mean']:.2f}", f"{s['ms_per_turn_p95']:.2f}",
        ])
        if prices:
            cache = s["cache"]
            cells = [_ratio(cache[p.name]["cost_vs_none"]) for p in prices]
            cells.append(_pct(cache[prices[0].name]["hit_rate"]))
            cells.append(_ratio(s["prefill_recomputed_vs_none"]))
            rows[-1][k:k] = cells
    return rows


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def cumulative_cost(results: Sequence[dict[str, Any]], name: str, price: PriceModel) -> list[float]:
    """Policy ``name``'s cache-priced input summed turn by turn over ``results`` (in replay order)."""
    out: list[float] = []
    total = 0.0
    for r in results:
        run = r["policies"][name]
        for tokens, cached in zip(run["tokens"], run["cached"].get(price.name, [])):
            total += price.cost(cached, tokens - cached)
            out.append(total)
    return out


def plot(results: Sequence[dict[str, Any]], summary_by_source: dict[str, dict[str, Any]], path: str,
         budget: int, item: str | None = None, price: PriceModel | None = None) -> str:
    """Context tokens per turn on one trajectory, freed vs retention per trajectory and policy, and (with a
    ``price``) each policy's cumulative cache-priced input per turn over all trajectories."""
    plt = pyplot()
    chosen = None
    if item:
        chosen = next((r for r in results if item in r["label"]), None)
        if chosen is None:
            raise ConfigError(f"--plot-item {item!r}: no such trajectory")
    if chosen is None:
        chosen = max(results, key=lambda r: max(r["policies"].get("none", next(iter(r["policies"].values())))
                                                ["tokens"], default=0))
    if price is not None:
        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 4.8))
    else:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    styles = {"none": ("0.55", "--"), "freemem": ("tab:green", "-"), "clear_tool_uses": ("tab:blue", "-"),
              "trim": ("tab:orange", "-")}
    for name, run in chosen["policies"].items():
        color, ls = styles.get(name, (None, "-"))
        ax1.plot(range(1, len(run["tokens"]) + 1), run["tokens"], label=name, color=color, linestyle=ls,
                 marker=".", markersize=3)
    ax1.axhline(budget, color="red", linewidth=0.8, linestyle=":", label=f"budget {budget:,}")
    ax1.set_title(f"context sent per turn — {chosen['label']}", fontsize=9)
    ax1.set_xlabel("assistant turn")
    ax1.set_ylabel("context tokens")
    ax1.legend(fontsize=8)
    markers = ["o", "s", "^", "D"]
    for k, (source, summary) in enumerate(summary_by_source.items()):
        for name, s in summary.items():
            if name == "none":
                continue
            pts = [(t["freed"], t["retention"]) for t in s["per_trajectory"]
                   if t["freed"] is not None and t["retention"] is not None]
            if not pts:
                continue
            color, _ = styles.get(name, (None, "-"))
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, alpha=0.6, color=color,
                        marker=markers[k % len(markers)], label=f"{name} ({source})")
    ax2.set_xlabel("mean share of tokens freed (per trajectory)")
    ax2.set_ylabel("reference retention")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("freed vs retention (one point per trajectory)", fontsize=9)
    ax2.legend(fontsize=7)
    if price is not None:
        for name in chosen["policies"]:
            series = cumulative_cost(results, name, price)
            if not series:
                continue
            color, ls = styles.get(name, (None, "-"))
            ax3.plot(range(1, len(series) + 1), [v / 1e6 for v in series], label=name, color=color, linestyle=ls)
        ax3.set_xlabel(f"assistant turn (all {len(results)} trajectories, one after another)")
        ax3.set_ylabel("cumulative input cost (M input-token units)")
        ttl = "no TTL" if price.ttl_s is None else f"TTL {price.ttl_s:g} s"
        ax3.set_title(f"cache-priced input, {price.name} (read {price.read:g}x, write {price.write:g}x, {ttl})",
                      fontsize=9)
        ax3.legend(fontsize=8)
    save_figure(fig, path)
    return chosen["label"]


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, default_relative=DEFAULT_DATA,
                         what="a transcript file (OpenHands JSONL, tau-bench JSON, any OpenAI-format) or a folder")
    p.add_argument("--budget", type=int, default=16_000, help="token budget of the context sent (default: 16000)")
    add_cleaner_arguments(p)
    p.add_argument("--every", type=int, default=5000,
                   help="freemem also cleans every N new tokens (0: off; default: 5000, FreeMemory's default)")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated list from {','.join(POLICIES + EXTRA_POLICIES)} "
                        f"(default: {','.join(POLICIES)})")
    p.add_argument("--min-ref-chars", type=int, default=MIN_REFERENCE_CHARS,
                   help="shortest shared substring that counts as a reference (default: 8)")
    p.add_argument("--plot-item", metavar="LABEL", help="trajectory for the per-turn plot (default: the longest)")
    p.add_argument("--price", action="append", metavar="MODEL",
                   help="price the input under prompt caching: " + ", ".join(PRICE_MODELS) +
                        ", a table 'read=0.1,write=1.25,ttl=300' or a JSON file; repeat for several "
                        "(default: anthropic)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_positive("--budget", args.budget)
    ensure_positive("--limit", args.limit)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        raise ConfigError("--policies is empty")
    data = resolve_data(args.data, DEFAULT_DATA)
    counter = bench_counter(args.counter)
    console = make_console(args.quiet or args.json == "-")
    trajectories = load_trajectories(data, args.limit)
    prices = [get_price_model(spec) for spec in (getattr(args, "price", None) or ["anthropic"])]
    if len({p.name for p in prices}) != len(prices):
        raise ConfigError("--price: two price models have the same name (give custom tables a name=...)")
    policies = build_policies(names, budget=args.budget, counter=counter,
                              cleaner=cleaner_factory(args, counter=counter, console=None if args.quiet else console),
                              every=args.every or None)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with progress_bar(console, not args.quiet) as bar:
        task = bar.add_task("replaying", total=len(trajectories)) if bar is not None else None
        for traj in trajectories:
            results.append(replay(traj, policies, budget=args.budget, counter=counter,
                                  min_ref_chars=args.min_ref_chars, prices=prices))
            if bar is not None:
                bar.advance(task)
    seconds = time.perf_counter() - t0
    sources = sorted({r["source"] for r in results})
    by_source = {src: summarize([r for r in results if r["source"] == src], names, args.budget, prices)
                 for src in sources}
    tables = {}
    columns = table_columns(prices)
    for src, summary in by_source.items():
        n = sum(1 for r in results if r["source"] == src)
        title = f"transcripts — {src}: {n} trajectories, budget {args.budget:,} ({counter.name})"
        rows = table_rows(summary, prices)
        tables[src] = markdown_table(columns, rows)
        print_table(console, title, columns, rows)
    result: dict[str, Any] = {
        "benchmark": "transcripts", "data": str(data), "budget": args.budget, "counter": counter.name,
        "cleaner": args.cleaner, "every_tokens": args.every or None, "policies": names,
        "min_ref_chars": args.min_ref_chars, "prices": [p.to_dict() for p in prices],
        "trajectories": len(results), "seconds": round(seconds, 2),
        "machine": machine_info(), "summary": by_source, "tables": tables, "results": results,
    }
    if getattr(args, "png", None):
        result["plot_item"] = plot(results, by_source, args.png, args.budget, args.plot_item, prices[0])
        console.print(f"wrote {args.png}")
    fm = [s["freemem"] for s in by_source.values() if "freemem" in s]
    if fm and any(s["turns_over_budget"] for s in fm):
        console.print("[yellow]freemem left turns over budget; '(N floor)' counts those where the protected part "
                      "alone (system, first/last human, latest turn, tool arguments, one marker per field) is over "
                      "it[/yellow]")
    return finish(args, result)
