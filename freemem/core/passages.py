"""What an archive's search looks through: the passages of an archived event, and the words they are ranked by.

An event (``CleanEvent.to_dict(spans=True)``) holds what a cleaning removed: spans freed inside messages and
folds (runs of whole messages, with the digest that stood in for them). :func:`event_passages` cuts it into what an
agent asks about, each with the id that recalls it whole (the ``recall`` tool):

* ``message`` -- a folded utterance (user or assistant text, with its speaker and, when the message carries one,
  its date); recalled by the message's id;
* ``tool`` -- a folded tool result, with the call that made it (``name(args)``); recalled by its message's id
  (an assistant message's calls are searched through their results, so its passage is its text alone);
* ``digest`` -- the digest a fold message showed in place of the messages; recalled by the fold's handle (which
  gives back every message the fold covers);
* ``span`` -- text freed inside a message; recalled by the 8 hex digits its marker names.

A folded message that was itself a fold message (a fold merged into a later one) is not a passage: its digest is
one already, under the earlier fold. Long texts are cut into pieces of about :data:`PIECE_CHARS` characters, each a
passage with the same id, so a match deep in a long tool output ranks on the words around it.

:func:`terms` is the one tokenizer every store ranks with (so a query finds the same passages in each): lower
case, Unicode words, a possessive ``'s`` dropped, a light English suffix folding (plurals, ``-ing``, ``-ed``), and
a short list of stop words left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from freemem.core.apply import span_ref
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.core.views import FOLD_KEY

__all__ = ["PIECE_CHARS", "Passage", "event_passages", "message_role", "date_words", "message_text", "snippet", "terms",
           "tool_calls"]

#: About how many characters one passage holds (a longer text becomes several passages with the same id).
PIECE_CHARS = 1500

#: Metadata keys a message may carry its own date under (first found wins).
_DATE_KEYS = ("date", "created_at", "timestamp", "time", "datetime")

_WORD = re.compile(r"\w+", re.UNICODE)

#: English function words (the usual list of search engines' English analysers, contractions split as the
#: tokenizer splits them): they match most passages and rank none, so they are not indexed or searched.
_STOP = frozenset(
    "a about above after again against all am an and any are aren as at be because been before being below "
    "between both but by can couldn d did didn do does doesn doing don down during each few for from further had "
    "hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its "
    "itself just ll m ma me mightn more most mustn my myself needn no nor not now o of off on once only or other "
    "our ours ourselves out over own re s same shan she should shouldn so some such t than that the their theirs "
    "them themselves then there these they this those through to too under until up ve very was wasn we were "
    "weren what when where which while who whom why will with won would wouldn y you your yours yourself "
    "yourselves also could might must shall would".split()
)


@dataclass(frozen=True)
class Passage:
    """One searchable piece of an archived event.

    Attributes:
        ref: the id that recalls the whole text (a message id, a fold handle or a span's 8 hex digits).
        event_id: the archived event it comes from.
        kind: ``"message"``, ``"tool"``, ``"digest"`` or ``"span"``.
        text: the passage's text (a piece of the whole when the whole is long).
        role: who said it (``user``, ``assistant``, ``tool``, ``system``), when known.
        name: the speaker's or the tool's name, when the message has one.
        call: for a tool result, the call that made it (``name({"arg": ...})``).
        date: the date the message carries in its own metadata, as given; ``None`` when it has none.
        fold: the handle of the fold it was folded in (a ``message``/``tool``/``digest`` passage).
        created_at: when the event was archived (its ``created_at``, as stored).
        piece: which piece of the whole text this is (0 for the first).
    """

    ref: str
    event_id: str
    kind: str
    text: str
    role: str | None = None
    name: str | None = None
    call: str | None = None
    date: str | None = None
    fold: str | None = None
    created_at: Any = None
    piece: int = 0

    def indexed_text(self) -> str:
        """What the ranking reads: the text with its speaker, date (an ISO date also as "May 4") and call, so
        "what did Evan say on May 4th" and "the output of read_file" find it."""
        head = " ".join(x for x in (self.role, self.name, date_words(self.date), self.call) if x)
        return f"{head}\n{self.text}" if head else self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Passage:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


_MONTHS = ("january february march april may june july august september october november december").split()
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)")


def date_words(date: str | None) -> str | None:
    """A message's date as searched: as given, and an ISO date's month name and day ("2023-05-04 may 4")."""
    if not date:
        return None
    found = _ISO_DATE.match(date)
    if found and 1 <= int(found.group(2)) <= 12:
        return f"{date} {_MONTHS[int(found.group(2)) - 1]} {int(found.group(3))}"
    return date


def terms(text: str) -> list[str]:
    """The words ``text`` is ranked by, in order (repeats kept: term frequency counts them)."""
    out: list[str] = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'").replace("'s ", " ").replace("'s\n", "\n")):
        if word in _STOP or (len(word) == 1 and not word.isdigit()):
            continue
        out.append(_fold_suffix(word))
    return out


def _fold_suffix(word: str) -> str:
    """A light, deterministic English suffix folding: cars/car, stories/story, parking/park, parked/park; an
    ordinal is its number (4th/4)."""
    if not word.isalpha():
        ordinal = _ORDINAL.fullmatch(word)
        return str(int(ordinal.group(1))) if ordinal else word
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    return word


def message_role(msg: Mapping[str, Any]) -> str:
    """The role of an archived message (an OpenAI dict or a LangChain dump)."""
    role = msg.get("role") or {"human": "user", "ai": "assistant", "AIMessageChunk": "assistant"}.get(
        str(msg.get("type")), msg.get("type"))
    return str(role or "message")


def message_text(msg: Mapping[str, Any]) -> str:
    """The text content of an archived message (text blocks joined; other blocks left out)."""
    content = msg.get("content")
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return "" if content is None else str(content)


def tool_calls(msg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(id, name, arguments)`` of each tool call of an archived message (OpenAI or LangChain form)."""
    out = []
    for call in msg.get("tool_calls") or []:
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function") if isinstance(call.get("function"), Mapping) else None
        name = str((fn.get("name") if fn else call.get("name")) or "")
        args = fn.get("arguments") if fn else json.dumps(call.get("args"), ensure_ascii=False)
        out.append((str(call.get("id") or ""), name, str(args if args is not None else "")))
    return out


def _date(msg: Mapping[str, Any]) -> str | None:
    for holder in (msg, msg.get("metadata"), msg.get("additional_kwargs"), msg.get("response_metadata")):
        if isinstance(holder, Mapping):
            for key in _DATE_KEYS:
                value = holder.get(key)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                    return str(value)
    return None


def _is_fold_message(msg: Mapping[str, Any]) -> bool:
    if str(msg.get("id") or "").startswith(FOLD_ID_PREFIX):
        return True
    return any(isinstance(h, Mapping) and FOLD_KEY in h for h in (msg.get("metadata"), msg.get("additional_kwargs")))


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of about :data:`PIECE_CHARS`, cut at a line or word break where one is near."""
    at = 0
    while at < len(text):
        end = at + PIECE_CHARS
        if end < len(text):
            cut = max(text.rfind("\n", at + PIECE_CHARS // 2, end), text.rfind(" ", at + PIECE_CHARS // 2, end))
            end = cut + 1 if cut > at else end
        yield text[at:end]
        at = end


def _split(base: Passage) -> list[Passage]:
    if len(base.text) <= PIECE_CHARS:
        return [base] if base.text.strip() or base.call else []
    return [Passage(**{**asdict(base), "text": piece, "piece": k}) for k, piece in enumerate(_pieces(base.text))]


def event_passages(event: Mapping[str, Any]) -> list[Passage]:
    """The passages of one archived event: its freed spans, and each fold's messages and digest."""
    event_id = str(event.get("id") or "")
    created = event.get("created_at")
    out: list[Passage] = []
    for spans in event.get("rounds") or ([event["spans"]] if isinstance(event.get("spans"), list) else []):
        for span in spans if isinstance(spans, list) else []:
            original = span.get("original") if isinstance(span, Mapping) else None
            if isinstance(original, str):
                out.extend(_split(Passage(ref=span_ref(original), event_id=event_id, kind="span", text=original,
                                          created_at=created)))
    for fold in event.get("folds") or []:
        if isinstance(fold, Mapping):
            out.extend(_fold_passages(fold, event_id, created))
    return out


def _fold_passages(fold: Mapping[str, Any], event_id: str, created: Any) -> list[Passage]:
    handle = str(fold.get("handle") or "")
    records = [r.get("message") for r in fold.get("messages") or [] if isinstance(r, Mapping)]
    messages: Sequence[Mapping[str, Any]] = [m for m in records if isinstance(m, Mapping)]
    calls = {cid: (name, args) for m in messages for cid, name, args in tool_calls(m) if cid}
    out: list[Passage] = []
    digest = fold.get("digest")
    if isinstance(digest, str) and digest.strip():
        out.extend(_split(Passage(ref=handle, event_id=event_id, kind="digest", text=digest, fold=handle,
                                  created_at=created)))
    for msg in messages:
        if _is_fold_message(msg):
            continue
        role = message_role(msg)
        ref = str(msg.get("id") or handle)
        text = message_text(msg)
        call: str | None = None
        if role == "tool":
            answered = calls.get(str(msg.get("tool_call_id") or ""))
            if answered:
                call = f"{answered[0]}({answered[1]})"
            elif msg.get("name"):
                call = str(msg["name"])
        name = msg.get("name")
        out.extend(_split(Passage(ref=ref, event_id=event_id, kind="tool" if role == "tool" else "message",
                                  text=text, role=role, name=str(name) if name else None, call=call,
                                  date=_date(msg), fold=handle, created_at=created)))
    return out


def snippet(text: str, query_terms: Sequence[str], chars: int) -> str:
    """At most ``chars`` characters of ``text``: the window holding the most query words (whole text when short)."""
    if len(text) <= chars:
        return text
    wanted = set(query_terms)
    hits = [m.start() for m in _WORD.finditer(text) if _fold_suffix(m.group().lower()) in wanted]
    if not hits:
        return text[:chars - 1] + "…"
    best, best_n, j = hits[0], 0, 0
    for i, start in enumerate(hits):
        while hits[j] < start - chars // 2:
            j += 1
        if i - j + 1 > best_n:
            best, best_n = hits[j], i - j + 1
    start = max(0, min(best - chars // 4, len(text) - chars + 2))
    end = start + chars - 2
    return ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")
