"""Long sessions for ``freemem bench long``: built from a seed by the bench itself, or read from shared data.

A :class:`Session` is what a middleware-driven agent would accumulate: ``head`` (the system message and, for
agents, the task) and then ``steps``, the messages that arrive between two model calls: an assistant message
with a tool call plus its result, or a user turn plus the assistant's reply. Every message has a stable id
(``add_messages`` merges by id) and every tool call id is unique in the whole session.

* :func:`tool_session` — a synthetic log-reading / debugging session with bulky results (log lines, file
  listings, grep hits, tracebacks, ~330 tokens each) full of identifiers (paths, request ids, error codes,
  hosts); some calls repeat earlier ones exactly, and the assistant's calls quote identifiers from earlier
  results (in an ``evidence`` argument) — recent ones mostly, any earlier one often — so that what pruning drops
  shows in reference retention.
* :func:`chat_session` — a synthetic chat of short turns: facts stated (names, codes, flights, dates) and
  asked about later, with small talk in between.
* :func:`memorybank_session` — MemoryBank's simulated users (all days of each, users one after another) as
  one chat, with its probing questions; each question's *key strings* are taken from the turn that answers it
  (:func:`probe_keys`: the data has no answers, so this is a lexical heuristic, stated as such in the output).
* :func:`openhands_session` — recorded OpenHands trajectories concatenated into one session.

:class:`TextIndex` finds the maximal shared substrings of a message with a long growing text, with exactly the
semantics of :meth:`freemem.bench.transcripts.ReferenceIndex.maximal_matches` but in memory about the size of
the text (a suffix automaton of a 10,000-call session, one Python dict per state, would take gigabytes).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.bench.transcripts import MIN_REFERENCE_CHARS, load_trajectories
from freemem.core.errors import FormatError

__all__ = [
    "Probe",
    "Session",
    "TextIndex",
    "chat_session",
    "memorybank_session",
    "openhands_session",
    "probe_keys",
    "tool_session",
]


@dataclass
class Probe:
    """A question about an earlier fact, and the strings that carry the fact."""

    user: str
    question: str
    evidence_date: str | None
    evidence: str
    keys: list[str]
    #: "names" (quoted phrases, capitalised names) or "rare words" (the fallback, a weaker signal).
    key_kind: str = "names"


@dataclass
class Session:
    """A long session: the messages before the first model call, then what each step appends."""

    name: str
    head: list[Any]
    steps: list[list[Any]]
    note: str = ""
    probes: list[Probe] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.head) + sum(len(s) for s in self.steps)


# ------------------------------------------------------------------------------------------ tools

_SERVICES = ("gateway", "billing", "ledger", "auth", "search", "checkout", "inventory", "notify", "profile",
             "reports", "scheduler", "uploads", "pricing", "sessions", "webhooks", "exports")
_TOPDIRS = ("services", "lib", "jobs", "workers", "api")
_MODULES = ("handler", "client", "retry", "cache", "config", "router", "models", "queue", "parser", "session",
            "limits", "metrics", "backoff", "pool", "schema", "serializer", "tasks", "views", "auth", "locks")
_PROBLEMS = ("upstream timeout", "connection reset by peer", "deadlock detected", "schema mismatch",
             "token expired", "pool exhausted", "rate limit exceeded", "checksum mismatch", "lock wait timeout",
             "unexpected null in field", "retry budget exhausted", "certificate verify failed")
_EXCEPTIONS = ("UpstreamTimeout", "PoolExhausted", "SchemaError", "LockTimeout", "KeyError", "ValueError",
               "ConnectionResetError", "RateLimited", "IntegrityError", "TokenExpired")
_FUNCS = ("call", "fetch", "commit", "retry", "render", "parse", "load", "acquire", "dispatch", "handle", "flush",
          "validate", "settle", "refresh")
_VERBS = ("read", "grep", "list", "test")
_TOOL_LEADS = ("The failure at", "So far the key lead is", "Noted", "This matches", "Still unexplained:",
               "Looks related to the deploy:", "Same signature as before:", "Needs a closer look:")
_TOOL_OPENING = "Starting with the obvious."


class _World:
    """The identifiers a synthetic service fleet is made of; results draw from them, so they recur."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.paths = sorted({f"{rng.choice(_TOPDIRS)}/{rng.choice(_SERVICES)}/{rng.choice(_MODULES)}.py"
                             for _ in range(420)})
        self.logs = sorted({f"/var/log/{s}/{s}-{rng.randrange(1, 9)}.log" for s in _SERVICES for _ in range(4)})
        # 8 characters: as long as the shortest string that counts as a reference
        self.codes = sorted({f"ERR-{rng.randrange(1000, 10000)}" for _ in range(260)})
        self.hosts = [f"ip-10-{rng.randrange(256)}-{rng.randrange(256)}-{rng.randrange(256)}" for _ in range(90)]
        self.requests: list[str] = []

    def request(self) -> str:
        # New request ids keep appearing; a third of the time an earlier one comes back (a retry).
        if self.requests and self.rng.random() < 0.33:
            return self.rng.choice(self.requests)
        rid = f"req-{self.rng.randrange(16 ** 8):08x}"
        self.requests.append(rid)
        return rid


def _log_result(w: _World, path: str, step: int) -> tuple[str, list[str]]:
    rng = w.rng
    service = path.split("/")[3]
    lines, ids = [], []
    for k in range(7):
        rid, code, host = w.request(), rng.choice(w.codes), rng.choice(w.hosts)
        level = rng.choice(("ERROR", "WARN", "ERROR", "INFO"))
        ms = rng.randrange(5, 9000)
        lines.append(f"2024-05-{1 + step % 28:02d}T{(step // 60) % 24:02d}:{step % 60:02d}:{k * 3 % 60:02d}Z {level} "
                     f"[{service}] {rid} {code} {rng.choice(_PROBLEMS)} after {ms}ms host={host}")
        ids.extend((rid, code, host))
    return "\n".join(lines), ids


def _listing_result(w: _World, folder: str) -> tuple[str, list[str]]:
    rng = w.rng
    names = ["__init__", *sorted(rng.sample(_MODULES, 12))]
    lines = [f"total {rng.randrange(40, 400)}"]
    ids = []
    for name in names:
        size = rng.randrange(200, 40000)
        lines.append(f"-rw-r--r-- 1 app app {size:>6} May {rng.randrange(1, 29):>2} "
                     f"{rng.randrange(24):02d}:{rng.randrange(60):02d} {folder}/{name}.py")
        ids.append(f"{folder}/{name}.py")
    return "\n".join(lines), ids


def _grep_result(w: _World, pattern: str) -> tuple[str, list[str]]:
    rng = w.rng
    lines, ids = [], []
    for _ in range(13):
        path, line = rng.choice(w.paths), rng.randrange(1, 900)
        exc, code = rng.choice(_EXCEPTIONS), rng.choice(w.codes)
        lines.append(f"{path}:{line}:    raise {exc}(code={code!r}, detail={pattern!r})")
        ids.extend((f"{path}:{line}", code))
    return "\n".join(lines), ids


def _traceback_result(w: _World, target: str) -> tuple[str, list[str]]:
    rng = w.rng
    frames = [rng.choice(w.paths) for _ in range(7)]
    exc, code, rid = rng.choice(_EXCEPTIONS), rng.choice(w.codes), w.request()
    lines = [f"============ FAILURES: {target} ============", "Traceback (most recent call last):"]
    ids = [rid, code]
    for path in frames:
        line, func = rng.randrange(1, 900), rng.choice(_FUNCS)
        lines.append(f'  File "{path}", line {line}, in {func}_{rng.choice(_MODULES)}')
        lines.append(f"    return self.{func}(request_id={rid!r}, timeout={rng.randrange(1, 60)})")
        ids.append(path)
    lines.append(f"{exc}: [{code}] {rng.choice(_PROBLEMS)} (request {rid})")
    lines.append(f"FAILED {target} - {exc}: {code}")
    lines.append(f"1 failed, {rng.randrange(3, 300)} passed in {rng.randrange(1, 90)}.{rng.randrange(100):02d}s")
    return "\n".join(lines), ids


def tool_session(tool_calls: int = 10_000, *, seed: int = 0) -> Session:
    """A synthetic tool-use session of ``tool_calls`` calls (see the module docstring)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    rng = random.Random(seed)
    w = _World(rng)
    head = [SystemMessage("You are an on-call SRE agent. Use the tools to find the root cause; quote the "
                          "identifiers you rely on, opening with one of: " + "; ".join(_TOOL_LEADS)
                          + f". Your first message: {_TOOL_OPENING}", id="sys"),
            HumanMessage(f"Incident INC-{rng.randrange(10 ** 5):05d}: checkout requests fail intermittently since "
                         "the last deploy. Find the root cause and the fix.", id="task")]
    seen: list[list[str]] = []  # identifiers per earlier result
    done: dict[tuple[str, str], tuple[str, list[str], dict[str, Any]]] = {}
    history: list[tuple[str, str]] = []
    steps: list[list[Any]] = []
    for i in range(tool_calls):
        quoted = _quote(rng, seen)
        if history and rng.random() < 0.08:
            name, arg = rng.choice(history)  # the same call again (same arguments): its result is the same
        else:
            name, arg = _next_call(rng, w, seen)
        key = (name, arg)
        if key not in done:
            args: dict[str, Any] = {"path" if name in ("read_log", "list_dir") else "pattern" if name == "grep"
                                    else "target": arg}
            if quoted:
                args["evidence"] = quoted
            done[key] = (*_run_tool(w, name, arg, i), args)
        result, ids, args = done[key]
        history.append(key)
        seen.append(ids)
        call_id = f"call_{i}"
        text = _assistant_text(rng, args.get("evidence", []))
        steps.append([
            AIMessage(text, id=f"a{i}", tool_calls=[{"name": name, "args": dict(args), "id": call_id,
                                                     "type": "tool_call"}]),
            ToolMessage(result, tool_call_id=call_id, name=name, id=f"t{i}"),
        ])
    return Session("tools", head, steps, note=f"synthetic, {tool_calls:,} tool calls, seed {seed}")


def _quote(rng: random.Random, seen: list[list[str]]) -> list[str]:
    """One or two identifiers of an earlier result: one of the last three most of the time, any earlier one
    otherwise (the long-range references that a window loses)."""
    if not seen:
        return []
    if rng.random() < 0.6:
        source = seen[-1 - rng.randrange(min(3, len(seen)))]
    else:
        source = rng.choice(seen)
    return rng.sample(source, min(len(source), rng.choice((1, 2))))


def _next_call(rng: random.Random, w: _World, seen: list[list[str]]) -> tuple[str, str]:
    verb = rng.choice(_VERBS)
    recent = [x for ids in seen[-5:] for x in ids]
    if verb == "read":
        return "read_log", rng.choice(w.logs)
    if verb == "list":
        return "list_dir", f"{rng.choice(_TOPDIRS)}/{rng.choice(_SERVICES)}"
    if verb == "grep":
        # Grep for something just seen (an error code, a request id) or a problem phrase.
        codes = [x for x in recent if x.startswith(("ERR-", "req-"))]
        return "grep", rng.choice(codes) if codes and rng.random() < 0.7 else rng.choice(_PROBLEMS)
    paths = [x.split(":")[0].split('"')[0] for x in recent if x.endswith(".py") or ".py:" in x]
    target = rng.choice(paths) if paths and rng.random() < 0.7 else rng.choice(w.paths)
    return "run_tests", f"tests/{target.replace('/', '_').removesuffix('.py')}_test.py"


def _run_tool(w: _World, name: str, arg: str, step: int) -> tuple[str, list[str]]:
    if name == "read_log":
        return _log_result(w, arg, step)
    if name == "list_dir":
        return _listing_result(w, arg)
    if name == "grep":
        return _grep_result(w, arg)
    return _traceback_result(w, arg)


def _assistant_text(rng: random.Random, quoted: list[str]) -> str:
    # The stock phrases are in the system prompt, so they never count as references (reference_strings
    # skips strings of the system text); the identifiers go in the call's "evidence" argument, one string
    # each, so no shared substring joins the end of one to the start of the next (or to the phrase).
    return rng.choice(_TOOL_LEADS) if quoted else _TOOL_OPENING


# ------------------------------------------------------------------------------------------- chat

_SYL = ("ka", "lo", "mi", "ra", "ve", "to", "sa", "ne", "du", "ri", "po", "la", "zu", "fe", "mo", "ti", "an", "el")
_CITIES = ("Lisbon", "Oslo", "Kyoto", "Quito", "Tallinn", "Porto", "Dakar", "Hobart", "Cusco", "Bergen", "Split",
           "Lima", "Malmo", "Ghent", "Perth", "Hanoi")
_RELATIONS = ("sister", "brother", "manager", "neighbour", "dentist", "coach", "landlord", "cousin", "mentor")
_ANIMALS = ("dog", "cat", "parrot", "rabbit", "tortoise", "ferret")
_THINGS = ("tea", "band", "novel", "board game", "hiking trail", "bakery", "podcast", "painter")
_SMALL_TALK = ("It rained all morning here, so I stayed in and read for a while.",
               "I'm a bit tired today, work was long and the meetings dragged on.",
               "I tried a new recipe for dinner, a lentil curry with lots of ginger.",
               "Went for a short run before breakfast, about twenty minutes.",
               "My basil plant on the windowsill is finally growing again.",
               "My train was late again this morning, third time this week.")

# What the user says between facts; the assistant's side of small talk and of a new fact is a short reply
# (under 8 characters, so no reply of the bench's own counts as a reference: what the assistant's messages
# re-use is the facts it recalls).
_USER_ASIDES = ("Anyway, the week has been busy.", "Sorry if I already told you that.",
                "I keep forgetting these things lately.", "Just thinking out loud here.",
                "The weather has been odd all week, sunny then rain.", "Work is calmer now, thankfully.",
                "I had coffee with a friend this afternoon.")
_SHORT_REPLIES = ("Noted.", "Got it.", "Saved.", "Okay!", "Nice!", "I see.", "Oh no!", "Ha!", "Cool.")


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.choice((2, 3)))).capitalize()


def _full_name(rng: random.Random) -> str:
    return f"{_name(rng)} {_name(rng)}"


def _fact(rng: random.Random, k: int) -> tuple[str, str, str]:
    """(user statement, user question, assistant answer) for one fact: the answer is the fact's value, as
    stated (no phrasing of its own that other answers would share)."""
    kind = k % 6
    if kind == 0:
        rel, name = rng.choice(_RELATIONS), _full_name(rng)
        return (f"By the way, my {rel} is called {name}, and is visiting next month.",
                f"Remind me, what is my {rel} called?", f"{name}.")
    if kind == 1:
        animal, name = rng.choice(_ANIMALS), _full_name(rng)
        return (f"I adopted a {animal} last week and named it {name}.", f"What did I name my {animal}?",
                f"{name}.")
    if kind == 2:
        city = rng.choice(_CITIES)
        flight = f"{rng.choice(('TP', 'SK', 'JL', 'LA', 'KL'))}{rng.randrange(100, 9999)}"
        day = f"{rng.choice(('March', 'April', 'May', 'June'))} {rng.randrange(1, 29)}"
        return (f"I'm flying to {city} with {flight} on {day}.", f"Which flight am I taking to {city}?",
                f"{flight} on {day}.")
    if kind == 3:
        code = f"{rng.randrange(10 ** 4):04d}-{rng.randrange(10 ** 3):03d}"
        what = rng.choice(("locker", "gym locker", "bike lock", "storage unit"))
        return (f"Note this for me please: my {what} code is {code}.", f"What was my {what} code again?",
                f"{code}.")
    if kind == 4:
        thing, value = rng.choice(_THINGS), _full_name(rng)
        return (f"My favourite {thing} at the moment is {value}.", f"Do you remember my favourite {thing}?",
                f"{value}.")
    order = f"#{rng.randrange(10 ** 6, 10 ** 7)}"
    shop = f"{_name(rng)} Supplies"
    return (f"I ordered a desk lamp from {shop}, order {order}.", f"What was the order number for the lamp?",
            f"{order}.")


def chat_session(turns: int = 2_000, *, seed: int = 0) -> Session:
    """A synthetic chat of ``turns`` short user/assistant exchanges (see the module docstring)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    rng = random.Random(seed)
    head = [SystemMessage("You are a friendly personal assistant. Remember what the user tells you.", id="sys")]
    facts: list[tuple[str, str, str]] = []
    steps: list[list[Any]] = []
    for i in range(turns):
        roll = rng.random()
        if i == 0 or roll < 0.25:
            fact = _fact(rng, len(facts))
            facts.append(fact)
            user, reply = fact[0], rng.choice(_SHORT_REPLIES)
        elif roll < 0.55:
            # Ask about an earlier fact: a recent one or any one since the start.
            fact = facts[-1 - rng.randrange(min(20, len(facts)))] if rng.random() < 0.5 else rng.choice(facts)
            user, reply = fact[1], fact[2]
        else:
            user, reply = rng.choice(_SMALL_TALK), rng.choice(_SHORT_REPLIES)
        if rng.random() < 0.7:
            user = f"{user} {rng.choice(_USER_ASIDES)}"
        steps.append([HumanMessage(user, id=f"h{i}"), AIMessage(reply, id=f"a{i}")])
    return Session("chat", head, steps, note=f"synthetic, {turns:,} turns, seed {seed}")


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


def memorybank_session(folder: Path, *, users: int | None = None) -> Session:
    """MemoryBank's users one after another as one chat, with every user's probing questions.

    Raises:
        FormatError: ``memory_bank_en.json`` is not of the form ``{user: {history: {date: [{query, response}]}}}``.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    bank_file = folder / "memory_bank_en.json"
    try:
        bank = json.loads(bank_file.read_text(encoding="utf-8"))
        per_user = {name: [(date, str(t["query"]), str(t["response"]))
                           for date in sorted(body["history"]) for t in body["history"][date]]
                    for name, body in bank.items()}
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{bank_file}: not MemoryBank's format ({exc})") from None
    names = list(per_user)[:users] if users else list(per_user)
    questions: dict[str, list[str]] = {}
    probe_file = folder / "probing_questions_en.jsonl"
    if probe_file.exists():
        for line in probe_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions.update(json.loads(line))
    head = [SystemMessage("You are an AI companion. Be warm, and remember what each user tells you.", id="sys")]
    steps: list[list[Any]] = []
    probes: list[Probe] = []
    for u, name in enumerate(names):
        for k, (_date, query, response) in enumerate(per_user[name]):
            steps.append([HumanMessage(query, id=f"mb{u}-{k}-q"), AIMessage(response, id=f"mb{u}-{k}-r")])
        for question in questions.get(name, []):
            date, evidence, keys, kind = probe_keys(question, per_user[name], name)
            if keys:
                probes.append(Probe(name, question, date, evidence, keys, kind))
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


# ------------------------------------------------------------------------------------ text index


class TextIndex:
    """Maximal shared substrings of a query with a growing prefix of a known text, with the results of
    :meth:`freemem.bench.transcripts.ReferenceIndex.maximal_matches` on that prefix.

    The whole text is given up front (a replay knows its session) and :meth:`reveal` moves the end of the
    indexed prefix, so indexing adds no copy of the text and the memory a replay reports is the engine's.
    A bitmap of the hashes of the prefix's ``min_len``-character windows settles most query positions without
    a scan (a clear bit: that window occurs nowhere); the rest are checked exactly with ``str`` searches,
    from the end of the prefix (recent text is where most references come from). Memory: ``bits / 8`` bytes.
    """

    def __init__(self, text: str, min_len: int = MIN_REFERENCE_CHARS, bits: int = 1 << 27) -> None:
        if min_len < 1 or bits < 8 or bits & (bits - 1):
            raise ValueError("min_len must be positive and bits a power of two (at least 8)")
        self.full_text = text
        self.min_len = min_len
        self._mask = bits - 1
        self._bitmap = bytearray(bits // 8)
        self.end = 0  # the indexed prefix is full_text[:end]
        self._hashed = 0  # windows starting before this are in the bitmap

    def reveal(self, end: int) -> None:
        """Index the text up to ``end`` (it only grows)."""
        end = min(end, len(self.full_text))
        if end <= self.end:
            return
        text, k, mask, bitmap = self.full_text, self.min_len, self._mask, self._bitmap
        for i in range(self._hashed, end - k + 1):
            h = hash(text[i:i + k]) & mask
            bitmap[h >> 3] |= 1 << (h & 7)
        self._hashed = max(self._hashed, end - k + 1)
        self.end = end

    def _maybe(self, window: str) -> bool:
        h = hash(window) & self._mask
        return bool(self._bitmap[h >> 3] & (1 << (h & 7)))

    def maximal_matches(self, query: str, min_len: int | None = None) -> set[str]:
        """Substrings of ``query`` of at least ``min_len`` characters that occur in the indexed prefix and
        cannot be extended on either side within ``query`` and still occur.

        Raises:
            ValueError: ``min_len`` is not the one the index was built for.
        """
        k = self.min_len if min_len is None else min_len
        if k != self.min_len:
            raise ValueError(f"this index hashes {self.min_len}-character windows, not {k}")
        text, stop = self.full_text, self.end
        n = len(query)
        # lengths[i]: the longest substring of query ending at i that occurs in the prefix, when at least k
        # (else 0, which is all maximality needs). Its start never moves left from one i to the next (a
        # substring that occurs has all its substrings occurring), so ``j`` is a lower bound carried along,
        # and ``pos`` is where query[j:i] was found (the next character usually extends it in place).
        lengths = [0] * n
        j, pos = 0, -1
        for i in range(k - 1, n):
            hi = i - k + 1  # the start of the k-character window ending at i
            end = i + 1
            if not self._maybe(query[hi:end]):
                j, pos = hi + 1, -1
                continue
            if pos >= 0 and text.startswith(query[j:end], pos, stop):
                lengths[i] = end - j
                continue
            found = text.rfind(query[j:end], 0, stop)
            if found >= 0:
                lengths[i], pos = end - j, found
                continue
            found = text.rfind(query[hi:end], 0, stop)
            if found < 0:
                j, pos = hi + 1, -1
                continue
            lo, top = j + 1, hi  # occurs(start) is False at j, True at hi, monotone in between
            while lo < top:
                mid = (lo + top) // 2
                at = text.rfind(query[mid:end], 0, stop)
                if at >= 0:
                    top, found = mid, at
                else:
                    lo = mid + 1
            j, pos = top, found
            lengths[i] = end - top
        out: set[str] = set()
        for i, m in enumerate(lengths):
            if m >= k and (i == n - 1 or lengths[i + 1] != m + 1):
                out.add(query[i - m + 1:i + 1])
        return out
