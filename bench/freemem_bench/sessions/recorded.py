"""The recorded long sessions ``freemem bench long`` replays: MemoryBank's users as one chat with their
probing questions, and the OpenHands trajectories concatenated into one tool-use session."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter as Tally
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freemem.core.errors import ConfigError, FormatError
from freemem_bench.sessions.model import Probe, Session
from freemem_bench.transcripts import load_trajectories

__all__ = ["MEMORYBANK_TUNE_USERS", "SPLITS", "memorybank_chats", "memorybank_session", "openhands_session", "probe_keys"]

# ------------------------------------------------------------------------------------- memorybank

_STOP = frozenset("""a about above after again all also am an and any are as at be been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers him his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours out over own same she should so some such than that the their them then there these they this
those through to too under until up very was we were what when where which while who whom why will with would you
your yours remember mentioned told tell recommended recommend recently once ago days before shared said name
called what's kind like some things thing ever really know think want good""".split())
_MONTHS = {"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
           "september": 9, "october": 10, "november": 11, "december": 12}
_DATE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"“]([^\"”]{3,80})[\"”]")
_CAPITALISED = re.compile(r"\b[A-Z][a-zA-Z'-]+(?:\s+(?:(?:of|the|de|&)\s+)?[A-Z][a-zA-Z'-]+)*")
_COMMON_CAPS = frozenset({"I", "I'm", "I'd", "I'll", "I've", "Hi", "Hello", "Hey", "Great", "Okay", "Ok", "Thank",
                          "Thanks", "Yes", "No", "Sure", "AI", "That", "This", "It", "It's", "You", "Your", "Do",
                          "What", "How", "Can", "Have", "Are", "Is", "If", "Then", "Also", "And", "But", "So",
                          "Well", "Oh", "Wow", "Of", "The", "A", "My", "We", "They", "There", "Certainly", "Sounds",
                          "Awesome", "Good", "Nice", "Let", "Let's", "When", "Where", "Which", "Why", "Today",
                          "Yesterday", "Tomorrow", "Maybe", "Please", "Not", "In", "On", "At", "For", "With", "As",
                          "Absolutely", "Of course", "Really", "Wonderful", "Indeed", "Here", "Some", "These"})

#: Words that open a sentence (capitalised there) in front of a name.
_STARTERS = frozenset({"Try", "Consider", "Check", "Visit", "Watch", "Read", "Listen", "Perhaps", "Go", "Maybe",
                       "Definitely", "Both", "Besides", "Recently", "Yes", "Unfortunately", "Personally"})


def _stem_words(text: str) -> set[str]:
    return {w[:6] for w in re.findall(r"[a-z][a-z'-]+|\d+", text.lower()) if w not in _STOP and len(w) >= 4}


def probe_keys(question: str, turns: Sequence[tuple[str, str, str]], user: str = ""
               ) -> tuple[str | None, str, list[str], str]:
    """The turn that answers ``question`` and the key strings that carry its fact.

    ``turns`` are ``(date, query, response)`` of one user. The answering turn shares the most content words
    with the question (on the named day when the question names one, like "On May 6th"); its key strings are
    its quoted phrases and capitalised names that the question does not already contain, or, where it has
    none, its two rarest content words (the user's own name is never a key). A heuristic: MemoryBank gives
    questions, not answers.
    """
    user_names = {user, *user.split()} if user else set()
    if not turns:
        return None, "", [], "names"
    wanted = _stem_words(_DATE.sub(" ", question))
    day = _DATE.search(question)
    pool = list(turns)
    if day:
        suffix = f"-{_MONTHS[day.group(1).lower()]:02d}-{int(day.group(2)):02d}"
        on_day = [t for t in turns if t[0].endswith(suffix)]
        pool = on_day or pool
    best = max(pool, key=lambda t: (len(wanted & _stem_words(t[1] + " " + t[2])), -pool.index(t)))
    date, query, response = best
    text = f"{query}\n{response}"
    q_low = question.lower()
    keys: list[str] = []
    for m in _QUOTED.finditer(text):
        phrase = m.group(1).strip()
        if phrase.lower() not in q_low and phrase not in keys:
            keys.append(phrase)
    for m in _CAPITALISED.finditer(text):
        words = m.group(0).split()
        before = text[:m.start()].rstrip(" \"'“(")
        if not before or before[-1] in ".!?:\n":
            words = words[1:]  # capitalised because it opens a sentence ("However", "Try Claude Monet")
        while words and (words[0] in _COMMON_CAPS or words[0] in _STARTERS):
            words = words[1:]
        phrase = " ".join(words)
        if not phrase or phrase in _COMMON_CAPS or phrase in user_names:
            continue
        if phrase.lower() in q_low or any(phrase in k for k in keys):
            continue
        keys.append(phrase)
    if not keys:
        freq = Tally(w for t in turns for w in re.findall(r"[a-z][a-z'-]+", (t[1] + " " + t[2]).lower()))
        words = [w for w in dict.fromkeys(re.findall(r"[a-z][a-z'-]+", text.lower()))
                 if w not in _STOP and len(w) >= 5 and w not in q_low]
        return date, text, sorted(words, key=lambda w: (freq[w], words.index(w)))[:2], "rare words"
    return date, text, keys, "names"


def _read_memorybank(folder: Path) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, list[str]]]:
    """``(turns per user, probing questions per user)``; turns are ``(date, query, response)`` by date.

    Raises:
        FormatError: ``memory_bank_en.json`` is not of the form ``{user: {history: {date: [{query, response}]}}}``.
    """
    bank_file = folder / "memory_bank_en.json"
    try:
        bank = json.loads(bank_file.read_text(encoding="utf-8"))
        per_user = {name: [(date, str(t["query"]), str(t["response"]))
                           for date in sorted(body["history"]) for t in body["history"][date]]
                    for name, body in bank.items()}
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{bank_file}: not MemoryBank's format ({exc})") from None
    questions: dict[str, list[str]] = {}
    probe_file = folder / "probing_questions_en.jsonl"
    if probe_file.exists():
        for line in probe_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions.update(json.loads(line))
    return per_user, questions


#: MemoryBank users (in file order) whose chats tune freemem's chat defaults; the rest are held out.
MEMORYBANK_TUNE_USERS = 8
SPLITS = ("tune", "held-out", "all")


def memorybank_chats(folder: Path, *, users_per_chat: int = 4, split: str = "held-out") -> list[Session]:
    """Multi-session chats built from MemoryBank: ``users_per_chat`` users' ten days each, one after another
    (12-15k tokens a chat), every message dated (``additional_kwargs["date"]``), with those users' probing
    questions. ``split``: the first :data:`MEMORYBANK_TUNE_USERS` users (``"tune"``: what the chat defaults were
    tuned on), the others (``"held-out"``: what the figures report), or ``"all"``.

    Raises:
        ConfigError: an unknown ``split`` or ``users_per_chat`` under 1.
        FormatError: MemoryBank's files are not in its format.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if users_per_chat < 1:
        raise ConfigError("users_per_chat must be at least 1")
    per_user, questions = _read_memorybank(folder)
    names = list(per_user)
    if split == "tune":
        names = names[:MEMORYBANK_TUNE_USERS]
    elif split == "held-out":
        names = names[MEMORYBANK_TUNE_USERS:]
    sessions: list[Session] = []
    for c in range(0, len(names), users_per_chat):
        group = names[c:c + users_per_chat]
        head = [SystemMessage("You are an AI companion. Be warm, and remember what the user tells you.", id="sys")]
        steps: list[list[Any]] = []
        probes: list[Probe] = []
        shift = 0  # each user's days follow the previous user's (every user's history starts on 2023-04-27)
        for name in group:
            u = names.index(name)
            days = [d for d, _q, _r in per_user[name]]
            for k, (date, query, response) in enumerate(per_user[name]):
                stamp = {"date": _shift_day(date, shift)}
                steps.append([HumanMessage(query, id=f"mb{u}-{k}-q", additional_kwargs=dict(stamp)),
                              AIMessage(response, id=f"mb{u}-{k}-r", additional_kwargs=dict(stamp))])
            for question in questions.get(name.strip(), []):
                date, evidence, keys, kind = probe_keys(question, per_user[name], name.strip())
                turn = next((k for k, (d, q, r) in enumerate(per_user[name])
                             if d == date and evidence == f"{q}\n{r}"), None)
                ids = [f"mb{u}-{turn}-q", f"mb{u}-{turn}-r"] if turn is not None else []
                if keys:
                    probes.append(Probe(name.strip(), _shift_mentions(question, shift),
                                        _shift_day(date, shift) if date else None, evidence, keys, kind, ids))
            if days:
                shift += (_day(max(days)) - _day(min(days))).days + 1
        label = "+".join(n.strip() for n in group)
        sessions.append(Session(f"memorybank[{label}]", head, steps, probes=probes,
                                note=f"MemoryBank {split}: {len(group)} users, {len(steps)} turns, "
                                     f"{len(probes)} probing questions"))
    return sessions


def _day(date: str) -> dt.date:
    return dt.date.fromisoformat(date[:10])


def _shift_day(date: str, days: int) -> str:
    """``date`` (``YYYY-MM-DD``) ``days`` later."""
    return (_day(date) + dt.timedelta(days=days)).isoformat() if days else date


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _shift_mentions(text: str, days: int, year: int = 2023) -> str:
    """``text`` with each "May 2nd" ``days`` later ("May 12th"), as the question would say it in a chat whose
    days were shifted."""
    if not days:
        return text

    def later(m: re.Match[str]) -> str:
        try:
            day = dt.date(year, _MONTHS[m.group(1).lower()], int(m.group(2))) + dt.timedelta(days=days)
        except ValueError:
            return m.group(0)
        return f"{day.strftime('%B')} {_ordinal(day.day)}"

    return _DATE.sub(later, text)


def memorybank_session(folder: Path, *, users: int | None = None) -> Session:
    """MemoryBank's users one after another as one chat, with every user's probing questions.

    Raises:
        FormatError: ``memory_bank_en.json`` is not of the form ``{user: {history: {date: [{query, response}]}}}``.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    per_user, questions = _read_memorybank(folder)
    names = list(per_user)[:users] if users else list(per_user)
    head = [SystemMessage("You are an AI companion. Be warm, and remember what each user tells you.", id="sys")]
    steps: list[list[Any]] = []
    probes: list[Probe] = []
    for u, name in enumerate(names):
        for k, (_date, query, response) in enumerate(per_user[name]):
            steps.append([HumanMessage(query, id=f"mb{u}-{k}-q"), AIMessage(response, id=f"mb{u}-{k}-r")])
        # The questions file names users without the stray spaces some have in the history file (" Jason ").
        for question in questions.get(name.strip(), []):
            date, evidence, keys, kind = probe_keys(question, per_user[name], name.strip())
            if keys:
                probes.append(Probe(name.strip(), question, date, evidence, keys, kind))
    return Session("memorybank", head, steps, probes=probes,
                   note=f"{len(names)} users, {len(steps)} turns, {len(probes)} probing questions")


# --------------------------------------------------------------------------------------- openhands


def openhands_session(path: Path, *, limit: int | None = None) -> Session:
    """Recorded trajectories concatenated into one session: the first system message once, then each
    trajectory's other messages in turn, tool-call ids made unique (trajectory and call number), cut
    into steps before each assistant message (the middleware runs before every model call).

    A run that ends on a call with no result (OpenHands' ``finish``) gets one, saying so: in the middle of a
    session an unanswered call is an invalid request for a chat API, and a call without its result is not a
    complete unit that could be folded or trimmed."""
    from langchain_core.messages import ToolMessage, convert_to_messages

    trajectories = load_trajectories(path, limit)
    flat: list[Any] = []
    calls = 0
    for t, traj in enumerate(trajectories):
        renamed: dict[str, str] = {}  # a result answers the latest call of that id (ids may repeat in a run)
        run: list[Any] = []
        for i, msg in enumerate(traj.messages):
            if msg.get("role") in ("system", "developer") and (t or flat):
                continue
            clean = {k: v for k, v in msg.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")}
            if clean.get("content") is None:
                clean["content"] = ""
            if clean.get("tool_calls"):
                new_calls = []
                for c in clean["tool_calls"]:
                    calls += 1
                    renamed[str(c.get("id"))] = f"t{t}_{calls}_{c.get('id')}"
                    new_calls.append({**c, "id": renamed[str(c.get("id"))]})
                clean["tool_calls"] = new_calls
            if clean.get("tool_call_id"):
                old = str(clean["tool_call_id"])
                clean["tool_call_id"] = renamed.get(old, f"t{t}_{old}")
            clean["id"] = f"oh{t}-{i}"
            run.append(convert_to_messages([clean])[0])
        answered = {m.tool_call_id for m in run if m.type == "tool"}
        pending: list[Any] = []  # results to add after the current call's recorded ones
        for msg in run:
            if msg.type != "tool" and pending:
                flat.extend(pending)
                pending = []
            flat.append(msg)
            if msg.type == "ai":
                pending = [ToolMessage("(the run ended here; no result was recorded)", tool_call_id=c["id"],
                                       name=c["name"], id=f"{msg.id}-end{n}")
                           for n, c in enumerate(c for c in msg.tool_calls if c["id"] not in answered)]
        flat.extend(pending)
    first_ai = next((i for i, m in enumerate(flat) if m.type == "ai"), len(flat))
    head, steps = flat[:first_ai], []
    for msg in flat[first_ai:]:
        if msg.type == "ai" or not steps:
            steps.append([msg])
        else:
            steps[-1].append(msg)
    return Session("openhands", head, steps, note=f"{len(trajectories)} trajectories concatenated, "
                                                  f"{len(flat):,} messages")
