"""Loading recorded conversations and replaying one turn by turn through every policy: per-turn tokens, references
kept, pairing violations, time, and what each request would read from a prompt cache."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.config import Triggers
from freemem.core.context import Context
from freemem.core.errors import ConfigError, FormatError
from freemem.core.pairing import pairing_violations
from freemem.core.prompt_cache import CacheMeter, PriceModel, message_keys
from freemem.io import read_document
from freemem.langgraph.request import request_tokens
from freemem.memory import MESSAGE_OVERHEAD_TOKENS, FreeMemory
from freemem.tokens import CachedCounter
from freemem_bench.transcripts.policies import FreememPolicy, Policy
from freemem_bench.transcripts.references import MIN_REFERENCE_CHARS, SEP, PieceCache, ReferenceIndex, reference_strings

__all__ = ["PolicyRun", "Trajectory", "load_trajectories", "replay"]

# --------------------------------------------------------------------------------------------- replay


@dataclass
class Trajectory:
    """One recorded conversation."""

    label: str
    source: str
    messages: list[dict[str, Any]]
    #: The tool definitions sent with every request (OpenHands rows carry them); counted in each request.
    tools: list[dict[str, Any]] = field(default_factory=list)


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
                tools = [t for t in item.tools or [] if isinstance(t, dict)]
                out.append(Trajectory(item.label, file.name, msgs, tools))
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


def _floor_tokens(messages: Sequence[Any], memory: FreeMemory, fixed: int = 0) -> dict[str, int]:
    """Tokens freemem cannot go below, by part: protected text (system, first/last human, the most recent
    turn, tool-call arguments, answer lines, pins), tool names, per-message overhead, one marker per editable
    field, the tool definitions (``fixed``). ``total`` is their sum."""
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
    parts["tool definitions"] = fixed
    parts["total"] = sum(parts.values())
    return parts


def replay(trajectory: Trajectory, policies: Sequence[Policy], *, budget: int, counter: CachedCounter,
           min_ref_chars: int = MIN_REFERENCE_CHARS, prices: Sequence[PriceModel] = (),
           count_tools: bool = False) -> dict[str, Any]:
    """Replay one trajectory through every policy; per-turn figures per policy.

    With ``prices``, each policy's requests also go through one prompt cache per price model
    (:class:`~freemem.core.prompt_cache.CacheMeter`: a request's cached prefix is the run of leading messages
    identical to the policy's previous request's); the recordings carry no timestamps, so the cache never
    expires between turns.

    With ``count_tools``, every request is counted as the model receives it: the messages (the system message
    among them) plus the trajectory's tool definitions (:func:`~freemem.langgraph.request.request_tokens`), a
    prefix that leads every request; each policy gives the messages the budget the tools leave, as
    ``FreeMemoryMiddleware`` does. Without, the messages only."""
    measurer = FreeMemory(counter=counter, triggers=Triggers(every_tokens=None, on_loop=False))
    want_lc = any(p.langchain for p in policies)
    fixed = request_tokens(counter, tools=trajectory.tools) if count_tools and trajectory.tools else 0
    for p in policies:
        p.reset(fixed)
    runs = {p.name: PolicyRun(cached={price.name: [] for price in prices}) for p in policies}
    meters = {p.name: [CacheMeter(price) for price in prices] for p in policies}
    index = ReferenceIndex()
    pieces = PieceCache()
    history: list[dict[str, Any]] = []
    lc_history: list[Any] = []
    system_text = SEP.join(pieces.text(m) for m in trajectory.messages if m.get("role") in ("system", "developer"))
    turns = 0
    for i, msg in enumerate(trajectory.messages):
        if msg.get("role") == "assistant" and history:
            turns += 1
            refs = reference_strings(index, msg, system_text, min_ref_chars)
            unpruned = measurer.count_messages(history) + fixed
            unpruned_lc = measurer.count_messages(lc_history) + fixed if want_lc else unpruned
            for p in policies:
                t0 = time.perf_counter()
                pruned = p.prune(history, lc_history)
                elapsed = time.perf_counter() - t0
                run = runs[p.name]
                tokens = measurer.count_messages(pruned) + fixed
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
                    if fixed:  # the tool definitions lead every request: a prefix that never changes
                        keys, sizes = ["tool definitions", *keys], [fixed, *sizes]
                    for meter in meters[p.name]:
                        run.cached[meter.price.name].append(meter.request(keys, sizes).cached)
                if tokens > budget and isinstance(p, FreememPolicy):
                    floor = _floor_tokens(pruned, p.memory, fixed)
                    if floor["total"] > budget:
                        run.floor_over.append({"turn": turns - 1, "tokens": tokens, "floor": floor})
        history.append(msg)
        if want_lc:
            lc_history.append(_to_langchain(msg))
        if i:
            index.extend(SEP)
        index.extend(pieces.text(msg))
    return {"label": trajectory.label, "source": trajectory.source, "messages": len(trajectory.messages),
            "turns": turns, "policies": {name: run.to_dict() for name, run in runs.items()}}
