"""The extractive digest of a fold: what of the folded messages a later turn is most likely to need, no model.

A fold (:mod:`freemem.core.folding`) replaces old messages by one short message; its digest decides what the agent
still reads of them without calling ``recall``. What later turns ask for is, overwhelmingly, *specifics*:
names, numbers, codes, dates, paths, ids, quoted titles — "which flight am I on?", "the error in
``src/app.py``" — not the small talk around them. So the digest is built from **sentences**, not whole
messages:

* every folded message is split into sentences (and lines); each sentence's *specifics* are its words that
  hold a digit, identifier-like strings (``src/app.py``, ``user_42``), capitalised words that do not start the
  sentence (names, places) and quoted strings;
* each sentence gets a tier: one whose specifics the later, unfolded conversation uses (user and assistant
  text and call arguments; a tool's output mentioning a string is not the agent using it) first; then what
  the user stated with specifics; then what the assistant said or did with specifics (a recommendation, a
  title) and the tool calls (name and short argument values); then the user's plain statements about
  themselves, what chat questions ask about most ("I enjoy badminton and swimming", "my sister moved to...":
  first person, two or more content words); then what the user asked; then the rest (small talk), which goes
  first when room is short;
* a fact is kept densely: a sentence with specifics is cut to the clauses that hold them (with the short clause
  before, which says what they are), and words that open a sentence without adding to it ("Okay, ", "Haha, ",
  "By the way, ") are left out; the text is cut, never rewritten;
* sentences are taken in tier order, newest first within a tier, while they fit ``cap_tokens``; a sentence
  with specifics that add nothing to what is already taken (an answer that repeats the fact it answers), or a
  plain statement whose content words are all taken, is left out, so the room goes to facts, not to echoes;
* a merged older digest's lines are read back the same way (their role is on the line, their day on the date
  line above), so an old fact keeps the tier it earned and competes with the new ones on equal terms;
* the taken sentences are written in conversation order, one line per message (``- user: ...``,
  ``- assistant: ...``, ``- called tool(arg=...)``, ``  tool said: ...``); when messages carry their date
  (``date`` / ``created_at`` / ``timestamp`` in their metadata, :attr:`MessageView.date`), each day's lines
  follow a ``[YYYY-MM-DD]`` line, so a fact keeps the day it was said.

In a thread of conversation only, :class:`~freemem.FreeMemory` gives the digest more than twice the room it
gives an agent's (``CHAT_DIGEST_SHARE``): the digest is then all that stays of the earlier days
(``docs/chat.md``).

A model summary (the ``summarize`` policy's summariser) is the other digest; this one costs no call and is
deterministic. Core module: plain strings and :class:`~freemem.core.views.MessageView`, no LangChain import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from freemem.core.views import MessageView, message_views

__all__ = ["FOLD_SUMMARY_SYSTEM", "extractive_digest", "render_for_summary", "specifics", "summary_prompt"]

#: Identifier-like strings (paths, ids, names): 8+ characters, not ending in punctuation ("id-42." is "id-42").
_IDENT = re.compile(r"[A-Za-z0-9_][\w./:\-]{6,}[\w/]")
_WS = re.compile(r"\s+")
#: freemem's own markers and fold headers: never evidence, never a fact.
_OWN = re.compile(r"\[freemem[: ][^\]\n]{0,120}\]")
#: Sentence ends: after . ! ? … followed by space, or a line break.
_SENTENCE = re.compile(r"(?<=[.!?…])\s+(?=\S)|\n+")
_WORD = re.compile(r"[^\W_][\w'’./:#@+\-]*")
_QUOTED = re.compile(r"[\"“']([^\"”'\n]{3,80})[\"”']")
_TRAIL = ".,;:!?'’-/"
#: Capitalised words that are not names wherever they stand.
_COMMON_CAPS = frozenset("""I I'm I'd I'll I've I’m OK Ok Okay Hi Hello Hey Thanks Thank Yes No Sure The A An
My Your It It's This That These Those There Here What When Where Which Who Why How Can Could Would Should Do
Does Did Is Are Was Were Have Has Had And But So Or If Then Also Well Oh Please Let Let's Great Good Nice
Monday Tuesday Wednesday Thursday Friday Saturday Sunday Today Tomorrow Yesterday""".split())
#: A merged digest's lines: ``- role: text``, ``- called name(args)``, ``  name said: text``.
_LINE = re.compile(r"^(?:- (?P<role>[\w-]+): |- (?P<called>called) |  (?P<tool>[\w.\-]+) said: )(?P<text>.*)$")
#: A merged digest's date line: the facts under it were said that day.
_DATE_LINE = re.compile(r"^\[(?P<date>\d{4}-\d{2}-\d{2})\]$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: What a person says about themselves: their likes, plans, doings ("I enjoy...", "my sister...").
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I’m|I've|I’ve|I'd|I’d|I'll|I’ll|my|My|me|we|We|our|Our)\b")
#: Words that open a sentence without adding to it ("Okay, ", "Haha, ", "By the way, ").
_FILLER_LEAD = re.compile(
    r"^(?:(?:ok(?:ay)?|yes|yeah|yep|well|oh|ah|haha+|hmm+|wow|great|sure|actually|anyway|so|hi|hello|hey|alright|"
    r"certainly|of course|absolutely|indeed|by the way|in fact|honestly|you know)\b[,!.]*\s+)+", re.IGNORECASE)
#: Common words that carry no fact (a plain statement's content words are its other words of 4+ letters).
_STOP = frozenset("""about above after again against also always another anything around away back because been
before being below between both came come could does doing done down during each else even ever every from
further going gone good great have having here hers herself himself into itself just know like little lot lots
made make many more most much must myself never nice only other ours ourselves over own really same should
some something such sure than thank thanks that that's their theirs them themselves then there these they thing
things think this those though through today together tomorrow under until very want was were what when where
which while will with would yesterday your yours yourself yourselves recently lately maybe quite still feel
felt today's day days time times way ways well please hope""".split())

#: The instruction of a model summary of folded messages (``{summary_tokens}``: its bound).
FOLD_SUMMARY_SYSTEM = (
    "Summarise the earlier part of a conversation between a user, an assistant and its tools, for the "
    "assistant to continue the task without it. Keep the task, decisions, facts found, identifiers, file "
    "paths, numbers and open questions; drop chatter and bulky tool output. Write only the summary, at most "
    "{summary_tokens} tokens."
)

_TIER_REFERENCED_STATED, _TIER_REFERENCED, _TIER_STATED, _TIER_DID, _TIER_TOLD, _TIER_ASKED, _TIER_REST = (
    6, 5, 4, 3, 2, 1, 0)
_SENTENCE_CHARS = 240
_HANDLE = re.compile(r"\bf[0-9a-f]{8}\b")
_HEADER_SLACK = 4


def _norm(word: str) -> str:
    return word.rstrip(_TRAIL).lower()


def specifics(sentence: str) -> set[str]:
    """The specific words of ``sentence`` (lower-cased, trailing punctuation off): words with a digit,
    identifier-like strings, capitalised words that do not start the sentence (and are not common ones),
    and the words of quoted strings."""
    out: set[str] = set()
    words = _WORD.findall(sentence)
    for k, raw in enumerate(words):
        word = raw.rstrip(_TRAIL)
        if not word:
            continue
        if (len(word) > 1 and any(c.isdigit() for c in word)) or (
                _IDENT.fullmatch(word) and any(c in word for c in "./_:-")):
            out.add(word.lower())
        elif k > 0 and word[0].isupper() and word not in _COMMON_CAPS and len(word) > 1:
            out.add(word.lower())
    for quoted in _QUOTED.findall(sentence):
        out.update(_norm(w) for w in _WORD.findall(quoted) if len(w) > 2)
    out.discard("")
    return out


def _words(text: str) -> set[str]:
    return {_norm(w) for w in _WORD.findall(text)}


def _later_words(views: Sequence[MessageView]) -> set[str]:
    """The words the later conversation uses: user and assistant text and tool-call arguments."""
    out: set[str] = set()
    for view in views:
        if view.role in ("system", "developer", "tool") or view.fold is not None:
            continue
        for _name, text in view.fields:
            out |= _words(_OWN.sub(" ", text))
        for _cid, _name, args in view.tool_calls:
            out |= _words(args)
    return out


def _one_line(text: str, limit: int) -> str:
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_line(name: str, args: str, limit: int = 160) -> str:
    try:
        parsed = json.loads(args) if args else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        bits = []
        for key, value in parsed.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            bits.append(f"{key}={_one_line(str(shown), 60)}")
        inner = ", ".join(bits)
    else:
        inner = _one_line(args, 60)
    return _one_line(f"{name}({inner})", limit)


@dataclass(slots=True)
class _Piece:
    """One candidate of the digest: a sentence (or a call, or a tool line) of one source message."""

    group: int  # the source message (or merged-digest line) it belongs to: one output line per group
    order: int  # conversation order
    prefix: str  # the group's line prefix ("- user: ")
    text: str
    tier: int
    keys: frozenset[str]
    joinable: bool = True  # sentences of one message share a line; calls and tool lines stand alone
    day: str | None = None  # the day it was said (a date line precedes each day's lines)
    words: frozenset[str] = frozenset()  # content words (the echo check of plain statements)


def _sentences(text: str) -> Iterable[str]:
    for part in _SENTENCE.split(_OWN.sub(" ", text)):
        part = part.strip()
        if part:
            yield _one_line(part, _SENTENCE_CHARS)


def _content_words(sentence: str) -> set[str]:
    """The words of ``sentence`` that may carry a fact: 4+ letters, not a common word (lower-cased)."""
    return {w for w in (_norm(x) for x in _WORD.findall(sentence)) if len(w) >= 4 and w not in _STOP}


def _told(sentence: str, words: frozenset[str] | set[str]) -> bool:
    """A plain statement about oneself with something in it: "I enjoy playing badminton and swimming"."""
    return len(words) >= 2 and _FIRST_PERSON.search(sentence) is not None


def _tier(role: str, sentence: str, keys: set[str], later: set[str],
          words: frozenset[str] | set[str] = frozenset()) -> int:
    user = role in ("user", "human")
    question = sentence.rstrip().endswith("?")
    if keys & later:
        return _TIER_REFERENCED_STATED if user and not question else _TIER_REFERENCED
    if keys:
        if user and not question:
            return _TIER_STATED
        return _TIER_DID if not user else _TIER_ASKED
    if user and not question and _told(sentence, words):
        return _TIER_TOLD
    if user and question:
        return _TIER_ASKED
    return _TIER_REST


#: Where a sentence splits into clauses: a comma, semicolon, colon or dash and the space after it.
_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+[—–-]\s+")
#: The most words of the clause kept in front of a fact's first clause (its context: "I read a book called").
_LEAD_WORDS = 12


def _clauses_with(sentence: str, keys: set[str]) -> str:
    """The clauses of ``sentence`` that hold one of ``keys``, with the clause before the first of them when it
    is short (what the fact is about); ``sentence`` itself when every clause holds one or none does. The text
    is cut, never rewritten: each clause keeps its own punctuation."""
    starts = [0] + [m.end() for m in _CLAUSE.finditer(sentence)]
    if len(starts) < 2:
        return sentence
    spans = [(a, b) for a, b in zip(starts, [*starts[1:], len(sentence)], strict=True)]
    holding = [bool(specifics(sentence[a:b]) & keys) for a, b in spans]
    if all(holding) or not any(holding):
        return sentence
    first = holding.index(True)
    keep = {k for k, h in enumerate(holding) if h}
    if first > 0 and len(sentence[slice(*spans[first - 1])].split()) <= _LEAD_WORDS:
        keep.add(first - 1)
    out = "".join(sentence[a:b] for k, (a, b) in enumerate(spans) if k in keep).strip()
    return out.rstrip(",;:—–- ") or sentence


def _strip_filler(sentence: str) -> str:
    """``sentence`` without the words that open it and add nothing ("Okay, ", "Haha, "); itself when that
    would leave nothing."""
    out = _FILLER_LEAD.sub("", sentence)
    return out if out.strip() else sentence


def _day(date: str | None) -> str | None:
    """A message's date as its day (``YYYY-MM-DD``) where it is one, else None."""
    if date is None:
        return None
    m = _ISO_DAY.match(date.strip())
    return m.group(0) if m else None


class _Collector:
    def __init__(self, later: set[str]) -> None:
        self.later = later
        self.pieces: list[_Piece] = []
        self.groups = 0

    def new_group(self) -> int:
        self.groups += 1
        return self.groups

    def text(self, role: str, text: str, *, prefix: str | None = None, day: str | None = None) -> None:
        group = self.new_group()
        prefix = prefix if prefix is not None else f"- {role}: "
        for sentence in _sentences(text):
            keys = specifics(sentence)
            words = _content_words(sentence)
            tier = _tier(role, sentence, keys, self.later, words)
            if tier >= _TIER_TOLD:
                sentence = _strip_filler(_clauses_with(sentence, keys) if keys else sentence)
            self.pieces.append(_Piece(group, len(self.pieces), prefix, sentence, tier, frozenset(keys),
                                      day=day, words=frozenset(words)))

    def single(self, line: str, keys: set[str], tier: int, *, day: str | None = None) -> None:
        if keys & self.later:
            tier = _TIER_REFERENCED
        self.pieces.append(_Piece(self.new_group(), len(self.pieces), "", line, tier, frozenset(keys),
                                  joinable=False, day=day))

    def tool_lines(self, name: str, text: str, limit: int) -> None:
        """The lines of a tool's output that the later conversation used (at most ``limit``)."""
        found = 0
        for raw in text.split("\n"):
            if found >= limit:
                break
            clean = _OWN.sub("", raw).strip()
            if not clean or len(raw) >= 400:
                continue
            keys = specifics(clean) | {t.lower() for t in _IDENT.findall(clean)}
            if keys & self.later:
                self.single(f"  {name} said: " + _one_line(clean, 160), keys, _TIER_REFERENCED)
                found += 1

    def merged_line(self, line: str, day: str | None = None) -> None:
        """A line of a merged older digest, read back with its role (and the day of the date line above it)."""
        m = _LINE.match(line)
        if m is None:
            self.text("note", line, prefix="- ", day=day)
        elif m["called"]:
            self.single(line, specifics(m["text"]) | _call_keys(m["text"]), _TIER_DID, day=day)
        elif m["tool"]:
            self.single(line, specifics(m["text"]), _TIER_DID, day=day)
        else:
            self.text(m["role"], m["text"], day=day)


def _call_keys(text: str) -> set[str]:
    return {t.lower() for t in _IDENT.findall(text)} | {_norm(w) for w in _WORD.findall(text)
                                                      if any(c.isdigit() for c in w)}


def extractive_digest(folded: Sequence[MessageView], later: Sequence[MessageView], *, header: str,
                      counter: Any, cap_tokens: int, ref_lines: int = 3) -> tuple[str, int]:
    """The digest of ``folded`` (``header`` first), within ``cap_tokens``; returns ``(text, tokens)``.

    ``later`` are the messages that stay after the fold (what they use ranks first). See the module
    docstring for the tiers; line order in the text is the conversation's.
    """
    col = _Collector(_later_words(later))
    for view in folded:
        if view.fold is not None:
            text = "\n".join(t for _n, t in view.fields)
            day: str | None = None
            for line in text.split("\n")[1:]:
                if (dated := _DATE_LINE.match(line.strip())) is not None:
                    day = dated["date"]
                elif line.strip():
                    col.merged_line(line, day)
            continue
        text = "\n".join(t for n, t in view.fields if n != "part")
        day = _day(view.date)
        if view.role in ("user", "human"):
            col.text("user", text, day=day)
        elif view.role == "assistant":
            if text.strip():
                col.text("assistant", text, day=day)
            for _cid, name, args in view.tool_calls:
                line = "- called " + _call_line(name, args)
                col.single(line, _call_keys(args) | specifics(line), _TIER_DID, day=day)
        elif view.role == "tool":
            col.tool_lines(view.name or "tool", text, ref_lines)
        elif text.strip():
            col.text(view.role, text, day=day)

    # The header names a random handle, whose token count varies: budget with a fixed one (and a little slack)
    # so the same messages always give the same digest.
    budget = max(0, cap_tokens - counter.count(_HANDLE.sub("f00000000", header)) - _HEADER_SLACK)
    # Take in tier order, newest first within a tier; skip echoes (specifics all taken already; for a plain
    # statement, its content words all taken already).
    taken: set[int] = set()
    seen: set[str] = set()
    seen_words: set[str] = set()
    days: set[str] = set()
    used = 0
    prefix_paid: set[int] = set()
    for piece in sorted(col.pieces, key=lambda p: (-p.tier, -p.order)):
        if piece.keys and piece.keys <= seen:
            continue
        if not piece.keys and piece.tier == _TIER_TOLD and piece.words <= seen_words:
            continue
        cost = counter.count(piece.text) + 1
        if piece.joinable and piece.group not in prefix_paid:
            cost += counter.count(piece.prefix)
        if piece.day is not None and piece.day not in days:
            cost += counter.count(f"[{piece.day}]") + 1
        if used + cost > budget:
            continue
        taken.add(piece.order)
        seen |= piece.keys
        seen_words |= piece.words
        used += cost
        if piece.day is not None:
            days.add(piece.day)
        if piece.joinable:
            prefix_paid.add(piece.group)
    lines: list[str] = []
    current: tuple[int, list[str]] | None = None
    shown_day: str | None = None
    for piece in col.pieces:
        if piece.order not in taken:
            continue
        if piece.joinable and current is not None and current[0] == piece.group:
            current[1].append(piece.text)
            continue
        if current is not None:
            lines.append(" ".join(current[1]))
        if piece.day is not None and piece.day != shown_day:
            lines.append(f"[{piece.day}]")
            shown_day = piece.day
        current = (piece.group, [piece.prefix + piece.text])
    if current is not None:
        lines.append(" ".join(current[1]))
    text = "\n".join([header, *lines])
    tokens = counter.count(text)
    if tokens > cap_tokens and lines:
        # Joining may cost a token or two more than the pieces did: drop the oldest lines until it fits.
        while lines and tokens > cap_tokens:
            lines.pop(0)
            text = "\n".join([header, *lines])
            tokens = counter.count(text)
    return text, tokens


# ------------------------------------------------------------------------------------------ model summary


def render_for_summary(messages: Sequence[Any]) -> str:
    """Messages (dicts or LangChain) as plain text for a summariser: ``[role name] text`` and the calls."""
    lines: list[str] = []
    for view in message_views(messages):
        head = f"[{view.role}{' ' + view.name if view.name else ''}]"
        body = "\n".join(text for _n, text in view.fields)
        calls = "".join(f"\n-> call {name}({args})" for _id, name, args in view.tool_calls)
        lines.append(f"{head} {body}{calls}")
    return "\n\n".join(lines)


def summary_prompt(messages: Sequence[Any], summary_tokens: int) -> list[tuple[str, str]]:
    """The chat prompt asking a model to summarise ``messages`` within ``summary_tokens``."""
    return [("system", FOLD_SUMMARY_SYSTEM.format(summary_tokens=summary_tokens)),
            ("human", render_for_summary(messages))]
