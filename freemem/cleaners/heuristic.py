"""HeuristicCleaner: no model, CPU only, deterministic — the embedded default.

It targets what the Free()LM paper found behind most context-limit failures, repetition, plus the bulk that
tool-using agents pile up:

* **loops** — a unit (line, paragraph, sentence, or any run of characters) repeated verbatim or
  near-verbatim (case and whitespace aside) three or more times in a row: all editable copies but the last go;
* **duplicated blocks** — a long paragraph that appears again later: the earlier copies go;
* **superseded tool results** — a tool called again later with the same arguments: the older result goes;
* **stale bulky tool output** — large results of older tool calls (outside the recency window) shrink to an
  excerpt: their first lines plus the lines holding strings the agent later quoted or acted on;
* **over a token budget** — it goes further, stalest and bulkiest first (old tool output, then old
  assistant text, then older reasoning), with ever shorter excerpts, until the context fits wherever the
  protected part fits; in plain reasoning text the oldest editable lines go first, so the question, the
  answer lines and the most recent reasoning stay.

It emits ordinary :class:`~freemem.Command` objects with anchors verified against the context
(:class:`~freemem.core.anchors.AnchorMaker`), so :func:`~freemem.apply_commands` accepts them as they are.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from freemem.core.anchors import AnchorMaker
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import Command
from freemem.core.context import Context, Region
from freemem.core.json_args import parse_arg_field
from freemem.core.loops import CHAR_LOOP, loop_runs, unit_key, units
from freemem.core.views import MESSAGE_OVERHEAD_TOKENS, counted_texts, views_media_tokens

__all__ = ["HeuristicCleaner"]

_WS = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S")
_IDENT = re.compile(r"[A-Za-z0-9_][\w./:\-]{7,}")


@dataclass
class _Field:
    """One editable text field of the context: where it sits and what it says."""

    message_index: int | None
    name: str
    role: str
    start: int  # offset of the field's first character in context.text
    text: str
    regions: list[Region]

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class _Span:
    start: int
    end: int
    why: str
    back_off: int = 0


class HeuristicCleaner(Cleaner):
    """Rule-based cleaner. See the module docstring for what it removes.

    Args:
        budget: token budget of the whole context; over it the cleaner prunes further. None: no budget.
        target: when over budget, prune down to ``budget * target`` so the next rounds have room.
        counter: token counter for budget estimates (the approximate counter when None).
        min_repeats: copies in a row that make a loop.
        keep_recent_tools: the newest N tool results are never stale.
        bulky_tokens: a stale tool result over this many tokens is excerpted even under budget.
        excerpt_head_lines: lines kept at the top of an excerpted tool result.
        duplicate_min_chars: a repeated paragraph at least this long counts as a duplicated block.
        fit_roles: whose text budget fitting may excerpt or clear (tool-call argument strings count as tool
            output). ``FreeMemory`` with folding leaves conversation text (user and assistant) to folds, which
            take whole old turns and keep the recent ones verbatim, so it passes ``("tool",)``.
    """

    name = "heuristic"
    #: Its commands are verified against the context, so a round may remove all editable text (a trace that
    #: is 95% loop should lose the loop).
    max_freed_share = 1.0
    #: Verified commands, one per span it chose: no cap on how many one round applies (a long transcript
    #: cleaned at once needs hundreds; the cap in ``apply_commands`` is for untrusted model output).
    max_commands = None
    #: Pure computation over the context: rounds call it directly (no worker thread, no ``RoundPolicy.timeout``).
    in_process = True

    def __init__(self, *, budget: int | None = None, target: float = 0.8, counter: Any = None,
                 min_repeats: int = 3, keep_recent_tools: int = 3, bulky_tokens: int = 2000,
                 excerpt_head_lines: int = 4, duplicate_min_chars: int = 200,
                 fit_roles: tuple[str, ...] = ("tool", "assistant", "user", "human", "text")) -> None:
        self.budget = budget
        self.target = target
        self.counter = counter
        self.min_repeats = min_repeats
        self.keep_recent_tools = keep_recent_tools
        self.bulky_tokens = bulky_tokens
        self.excerpt_head_lines = excerpt_head_lines
        self.duplicate_min_chars = duplicate_min_chars
        self.fit_roles = tuple(fit_roles)
        self._para_cache: dict[str, list[tuple[str, int, int]]] = {}
        self._loop_cache: dict[tuple[str, tuple[tuple[int, int], ...]], list[tuple[int, int, int]]] = {}

    # -- public -----------------------------------------------------------------------------------------
    def propose(self, context: Context) -> Proposal:
        t0 = time.perf_counter()
        fields = _editable_fields(context)
        spans: list[_Span] = []
        for f in fields:
            spans.extend(self._loops(f))
        spans.extend(self._duplicates(fields, context))
        if context.kind == "messages":
            spans.extend(self._superseded(context, fields))
            spans.extend(self._stale_bulky(context, fields))
        maker = AnchorMaker(context)  # one per snapshot: it remembers the anchors it made
        if self.budget is not None:
            # Budget fitting counts on what the rules above free: only spans that can be anchored (text
            # repeated elsewhere, e.g. an identical tool output, may give no unique anchor).
            emitted: list[_Span] = []
            self._commands(maker, list(spans), emitted=emitted)
            spans = emitted + self._fit_budget(context, fields, emitted, maker)
        commands = self._commands(maker, spans)
        return Proposal(commands=commands, cleaner=self.name, latency_s=time.perf_counter() - t0,
                        extra={"spans": len(spans)})

    # -- token estimates --------------------------------------------------------------------------------
    def _counter(self) -> Any:
        if self.counter is None:
            from freemem.tokens import ApproxCounter

            self.counter = ApproxCounter()
        return self.counter

    # -- rules ------------------------------------------------------------------------------------------
    def _loops(self, f: _Field) -> list[_Span]:
        """Loop spans of one field. A stateful caller shows the same fields round after round (an agent's
        history only grows), so results are cached by the field's text and protected ranges."""
        if len(f.text) < 60:
            return []
        protected = tuple((r.start - f.start, r.end - f.start) for r in f.regions if not r.editable)
        key = (f.text, protected)
        hit = self._loop_cache.get(key)
        if hit is None:
            hit = self._field_loops(f.text, list(protected))
            if len(self._loop_cache) >= 1024:
                self._loop_cache.clear()
            self._loop_cache[key] = hit
        return [_Span(f.start + s, f.start + e, "loop", back_off=b) for s, e, b in hit]

    def _field_loops(self, text: str, protected: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """``(start, end, back_off)`` of loop spans in ``text`` (offsets in the text), avoiding ``protected``."""
        parts = units(text)
        keys = [unit_key(text[a:b]) for a, b in parts]
        out: list[tuple[int, int, int]] = []
        covered: list[tuple[int, int]] = []
        for a, b, q in loop_runs(keys, self.min_repeats):
            covered.append((parts[a][0], parts[b - 1][1]))
            # Copies wholly in editable text; those past a protected range stay (and count as kept).
            copies = (b - a) // q
            editable = 0
            for c in range(copies):
                c_start, c_end = parts[a + c * q][0], parts[a + c * q + q - 1][1]
                if any(x < c_end and c_start < y for x, y in protected):
                    break
                editable += 1
            keep_one = editable == copies  # no protected copy after them: keep the last editable one
            drop = editable - 1 if keep_one else editable
            if drop < 1:
                continue
            s = parts[a][0]
            e = parts[a + drop * q - 1][1]
            if e - s >= 40:
                out.append((s, e, 2))
        # Loops inside one long line (a unit repeated without line breaks).
        for a, b in parts:
            if b - a < 400 or any(x <= a < y for x, y in covered):
                continue
            for m in CHAR_LOOP.finditer(text, a, b):
                unit = len(m.group(1))
                s, e = m.start(), m.end() - unit
                if e - s >= 40 and not any(x < e and s < y for x, y in protected):
                    out.append((s, e, 1))
        return out

    def _duplicates(self, fields: list[_Field], context: Context | None = None) -> list[_Span]:
        """Long paragraphs that appear more than once: drop the copies that may go.

        Only copies the agent or its tools wrote may go (fields of a tool or assistant message, or plain
        reasoning text): a human's or the system's words are never removed because a tool result repeats
        them (a tool can quote a user's instruction framed as "withdrawn"). A deletable copy that is the same
        text, byte for byte, as a copy in a human or system message (editable or protected: ``context``
        gives the protected ones) goes, that copy being the one kept; otherwise the last deletable copy is
        kept, as the freshest (a copy that differs only in whitespace, e.g. code re-indented, keeps its exact
        form: the next turn may quote it)."""
        trusted: set[str] = set(self._trusted_paragraphs(context)) if context is not None else set()
        last: dict[str, int] = {}
        seen: list[tuple[str, str, int, int, int]] = []
        for f in fields:
            deletable = f.role in _DELETABLE_ROLES
            for key, start, end in self._paragraphs(f.text):
                exact = f.text[start:end].strip()
                if deletable:
                    # A copy is identical to the kept one, so its own first characters are no unique anchor:
                    # the span may start at the line before it when that line is in the same field.
                    back_off = 1 if _NON_SPACE.search(f.text, 0, start) else 0
                    seen.append((key, exact, f.start + start, f.start + end, back_off))
                    last[key] = f.start + start
                else:
                    trusted.add(exact)
        return [_Span(s, e, "duplicate", back_off=b) for key, exact, s, e, b in seen
                if exact in trusted or last[key] != s]

    def _trusted_paragraphs(self, context: Context) -> list[str]:
        """The exact text (stripped) of the long paragraphs of the human and system messages the context
        protects whole (their editable fields are seen by :meth:`_duplicates` itself)."""
        if context.views is None:
            return []
        editable = {(r.message_index, r.field) for r in context.regions if r.editable}
        return [text[s:e].strip() for v in context.views if v.role not in _DELETABLE_ROLES
                for name, text in v.fields if name != "part" and (v.index, name) not in editable
                for _key, s, e in self._paragraphs(text)]

    @staticmethod
    def _holds_trusted_text(f: _Field) -> bool:
        """A field of a human or system message. The duplicate rule keeps such copies and removes the tool's
        or assistant's, so such a field may be the only copy left of what a tool repeated, in this round or
        after an earlier one: budget fitting should not excerpt or clear it (a fold archives it whole)."""
        return f.role not in _DELETABLE_ROLES

    def _paragraphs(self, text: str) -> list[tuple[str, int, int]]:
        """``(key, start, end)`` of the long paragraphs of a field, cached by its text (a history is
        re-read round after round)."""
        hit = self._para_cache.get(text)
        if hit is not None:
            return hit
        out: list[tuple[str, int, int]] = []
        pos = 0
        for para in _PARA_SPLIT.split(text):
            start, pos = pos, pos + len(para)
            if len(para) < self.duplicate_min_chars or not para.strip():
                continue
            out.append((unit_key(para), start, pos))
        if len(self._para_cache) >= 4096:
            self._para_cache.clear()
        self._para_cache[text] = out
        return out

    def _superseded(self, context: Context, fields: list[_Field]) -> list[_Span]:
        """Results of a tool call repeated later with the same name and arguments."""
        assert context.views is not None
        latest: dict[tuple[str, str], str] = {}
        call_of: dict[str, tuple[str, str]] = {}
        for view in context.views:
            for call_id, name, args in view.tool_calls:
                key = (name, _WS.sub("", args))
                latest[key] = call_id
                call_of[call_id] = key
        out = []
        for f in fields:
            view = context.views[f.message_index] if f.message_index is not None else None
            if view is None or view.role != "tool" or view.tool_call_id not in call_of:
                continue
            if latest[call_of[view.tool_call_id]] != view.tool_call_id and len(f.text) > 80:
                out.append(self._whole_field(context, f, "superseded"))
        return out

    def _stale_bulky(self, context: Context, fields: list[_Field]) -> list[_Span]:
        tools = [f for f in fields if f.role == "tool"]
        stale = tools[: max(0, len(tools) - self.keep_recent_tools)]
        counter = self._counter()
        out: list[_Span] = []
        refs = _later_references(context)
        for f in stale:
            if counter.count(f.text) > self.bulky_tokens:
                out.extend(self._excerpt(context, f, refs, self.excerpt_head_lines,
                                         max_ref_lines=12))
        return out

    def _fit_budget(self, context: Context, fields: list[_Field], planned: list[_Span],
                    maker: AnchorMaker) -> list[_Span]:
        """Over budget: excerpt then clear fields, stalest and bulkiest first, until the estimate fits."""
        assert self.budget is not None
        counter = self._counter()
        # Argument strings cost what their JSON encoding costs (escapes included).
        field_tokens = {id(f): counter.count(_encoded(f.text) if parse_arg_field(f.name) else f.text)
                        for f in fields}
        if context.kind == "messages" and context.views is not None:
            # What FreeMemory.count_messages counts (a CachedCounter makes the repeats free).
            texts = counted_texts(context.views)
            total = (sum(counter.count_many(texts)) + views_media_tokens(counter, context.views)
                     + MESSAGE_OVERHEAD_TOKENS * len(context.views))
        else:
            editable_chars = sum(len(f.text) for f in fields)
            rest = _protected_texts(context)
            header_chars = len(context.text) - editable_chars - sum(len(t) for t in rest)
            total = sum(field_tokens.values()) + sum(counter.count_many(rest)) + header_chars // 4
        if total <= self.budget:
            return []
        goal = self.budget * self.target
        planned_by_field: dict[int, int] = {}

        def freed_in(f: _Field, spans: Iterable[_Span]) -> int:
            chars = sum(max(0, min(s.end, f.end) - max(s.start, f.start)) for s in spans)
            return int(field_tokens[id(f)] * chars / max(1, len(f.text)))

        estimate = total
        for f in fields:
            planned_by_field[id(f)] = freed_in(f, planned)
            estimate -= planned_by_field[id(f)]
        if estimate <= goal:
            return []
        if context.kind == "text":
            return self._fit_text(context, fields, planned, estimate - goal, field_tokens)
        refs = _later_references(context)
        n = len(fields)
        order = {"tool": 0, "assistant": 1}

        def rank(pair: tuple[int, _Field]) -> tuple[int, float]:
            i, f = pair
            # Stalest and bulkiest first: tool output before assistant text, older and larger first.
            age = 1.0 - i / max(1, n)
            return order.get(f.role, 2), -(age * field_tokens[id(f)])

        out: list[_Span] = []
        # Levels: short excerpt, shorter excerpt, whole field; fields whose excerpt could not be anchored
        # this round (their text repeats in a copy that may go now: anchorable next round) are cleared
        # whole only as the last resort.
        blocked: set[int] = set()
        for level in (0, 1, 2, 3):
            for _, f in sorted(enumerate(fields), key=rank):
                if estimate <= goal:
                    return out
                if field_tokens[id(f)] < 40 or (level == 2 and id(f) in blocked):
                    continue
                if self._holds_trusted_text(f):
                    continue  # human and system text goes only as whole folded turns, never cut by budget
                if f.role not in self.fit_roles and not (parse_arg_field(f.name) and "tool" in self.fit_roles):
                    continue
                if level == 3 and (id(f) not in blocked or out or planned):
                    continue  # other deletions this round may unblock it: the next round excerpts it
                already = planned_by_field[id(f)]
                if level == 0:
                    new = self._excerpt(context, f, refs, 2, max_ref_lines=8)
                elif level == 1:
                    new = self._excerpt(context, f, refs, 1, max_ref_lines=2)
                else:
                    new = [self._whole_field(context, f, "budget")]
                # Count only what can be anchored (text repeated elsewhere may offer no unique anchor).
                anchored = [sp for sp in new if maker.command(sp.start, sp.end, back_off=sp.back_off) is not None]
                if level < 2 and len(anchored) < len(new):
                    blocked.add(id(f))
                gain = freed_in(f, anchored)
                if gain <= already:
                    continue
                out.extend(anchored)
                estimate -= gain - already
                planned_by_field[id(f)] = gain
        return out

    def _fit_text(self, context: Context, fields: list[_Field], planned: list[_Span], need: float,
                  field_tokens: dict[int, int]) -> list[_Span]:
        """Plain reasoning text over budget: the oldest editable lines go first, whole lines, until ``need``
        tokens are freed. The question, answer lines and the recency window are protected regions, so what
        stays is the question, the answers and the most recent reasoning — the model continues from there.
        (Excerpting the whole field, as for tool output, would leave one span that runs into the recency
        window, which apply rightly refuses.)"""
        text = context.text
        taken = sorted((s.start, s.end) for s in planned)

        def planned_overlap(a: int, b: int) -> int:
            return sum(max(0, min(b, y) - max(a, x)) for x, y in taken if x < b and a < y)

        out: list[_Span] = []
        for f in fields:
            per_char = field_tokens[id(f)] / max(1, len(f.text))
            for r in f.regions:
                if not r.editable:
                    continue
                cut = r.start
                while cut < r.end and need > 0:
                    nl = text.find("\n", cut, r.end)
                    nxt = r.end if nl < 0 else nl + 1
                    need -= (nxt - cut - planned_overlap(cut, nxt)) * per_char
                    cut = nxt
                if cut - r.start > 40:
                    out.append(_Span(r.start, cut, "budget", back_off=1))
                if need <= 0:
                    return out
        return out

    # -- span shapes ------------------------------------------------------------------------------------
    def _whole_field(self, context: Context, f: _Field, why: str) -> _Span:
        # Start at the message header (unique thanks to its call id) so identical outputs can be told apart.
        start = f.start
        for r in context.regions_in(max(0, f.start - 1), f.start):
            if r.kind == "header" and r.reason == "header":
                start = r.start
        return _Span(start, f.end, why)

    def _excerpt(self, context: Context, f: _Field, refs: dict[str, int], head: int, max_ref_lines: int) -> list[_Span]:
        """Keep the first ``head`` lines and up to ``max_ref_lines`` lines holding later-used strings."""
        lines = f.text.splitlines(keepends=True)
        keep = [False] * len(lines)
        for i in range(min(head, len(lines))):
            keep[i] = True
        if refs:
            me = f.message_index if f.message_index is not None else -1
            found = 0
            for i, line in enumerate(lines):
                if found >= max_ref_lines:
                    break
                if not keep[i] and len(line) < 400 and any(refs.get(t, -1) > me for t in _IDENT.findall(line)):
                    keep[i] = True
                    found += 1
        spans: list[_Span] = []
        pos = 0
        gap_start: int | None = None
        for line, k in zip(lines, keep):
            if not k and gap_start is None:
                gap_start = pos
            elif k and gap_start is not None:
                spans.append(_Span(f.start + gap_start, f.start + pos, "excerpt"))
                gap_start = None
            pos += len(line)
        if gap_start is not None:
            spans.append(_Span(f.start + gap_start, f.start + pos, "excerpt"))
        # Tiny gaps cost more in markers than they free.
        return [s for s in spans if s.end - s.start > 80]

    # -- commands ---------------------------------------------------------------------------------------
    def _commands(self, maker: AnchorMaker, spans: list[_Span], emitted: list[_Span] | None = None) -> list[Command]:
        """Anchored commands for ``spans`` (overlaps merged); ``emitted`` collects the ranges they cover."""
        if not spans:
            return []
        spans.sort(key=lambda s: (s.start, -s.end))
        commands: list[Command] = []
        covered_to = -1
        for span in spans:
            if span.end <= covered_to:
                continue  # inside a span already emitted
            start, end = max(span.start, covered_to), span.end
            cmd = maker.command(start, end, back_off=span.back_off)
            if cmd is None and start != span.start:
                start = span.start
                cmd = maker.command(start, end, back_off=span.back_off)
            if cmd is None:
                continue
            commands.append(cmd)
            if emitted is not None:
                emitted.append(_Span(start, end, span.why, span.back_off))
            covered_to = max(covered_to, end)
        return commands


def _editable_fields(context: Context) -> list[_Field]:
    """Fields holding at least some editable text, in context order."""
    by_key: dict[tuple[int | None, str], list[Region]] = {}
    order: list[tuple[int | None, str]] = []
    for r in context.regions:
        if r.field is None or r.kind == "header":
            continue
        key = (r.message_index, r.field)
        if key not in by_key:
            by_key[key] = []
            order.append(key)
        by_key[key].append(r)
    out = []
    for key in order:
        regions = by_key[key]
        if not any(r.editable for r in regions):
            continue
        start, end = regions[0].start, regions[-1].end
        role = context.views[key[0]].role if context.views is not None and key[0] is not None else "text"
        out.append(_Field(key[0], key[1], role, start, context.text[start:end], regions))
    return out


_PARA_SPLIT = re.compile(r"(\n\s*\n)")

#: Roles whose copies of a repeated paragraph the duplicate rule may remove: what the agent and its tools
#: wrote ("text" is plain reasoning text). Human and system text is never removed for a repetition.
_DELETABLE_ROLES = frozenset({"tool", "assistant", "text"})


def _encoded(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _protected_texts(context: Context) -> list[str]:
    """Text of fields with no editable part (whole protected messages), one string per field."""
    if context.views is None:
        return []
    editable = {(r.message_index, r.field) for r in context.regions if r.editable}
    return [text for v in context.views for name, text in v.fields
            if name != "part" and (v.index, name) not in editable]


def _later_references(context: Context) -> dict[str, int]:
    """Identifier-like strings (8+ characters) assistant messages used, each with the last message index
    that used it: a line of message ``i`` was later quoted or acted on when one of its strings maps above i."""
    out: dict[str, int] = {}
    if context.views is None:
        return out
    for view in context.views:
        if view.role == "assistant":
            for _name, text in view.fields:
                for tok in _IDENT.findall(text):
                    out[tok] = view.index
            for _cid, _name, args in view.tool_calls:
                for tok in _IDENT.findall(args):
                    out[tok] = view.index
    return out
