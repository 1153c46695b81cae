"""The synthetic long sessions ``freemem bench long`` builds itself: a tool-use session of thousands of calls
(logs, listings, grep hits, tracebacks that later calls quote) and a chat of thousands of short turns
(facts stated, asked about later)."""

from __future__ import annotations

import random
from typing import Any

from freemem_bench.sessions.model import Session

__all__ = ["chat_session", "tool_session"]

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
    return (f"I ordered a desk lamp from {shop}, order {order}.", "What was the order number for the lamp?",
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
