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
* :func:`memorybank_chats` — multi-session chats of several MemoryBank users each (12-15k tokens, dated
  messages, their probing questions with the ids of the answering turn), split into users that tuned the chat
  defaults and held-out users.
* :func:`openhands_session` — recorded OpenHands trajectories concatenated into one session.

:class:`TextIndex` finds the maximal shared substrings of a message with a long growing text, with exactly the
semantics of :meth:`freemem_bench.transcripts.ReferenceIndex.maximal_matches` but in memory about the size of
the text (a suffix automaton of a 10,000-call session, one Python dict per state, would take gigabytes).
"""

from __future__ import annotations

from freemem_bench.sessions.model import Probe, Session
from freemem_bench.sessions.recorded import (
    MEMORYBANK_TUNE_USERS,
    SPLITS,
    memorybank_chats,
    memorybank_session,
    openhands_session,
    probe_keys,
)
from freemem_bench.sessions.synthetic import chat_session, tool_session
from freemem_bench.sessions.text_index import TextIndex

__all__ = [
    "MEMORYBANK_TUNE_USERS",
    "Probe",
    "SPLITS",
    "Session",
    "TextIndex",
    "chat_session",
    "memorybank_chats",
    "memorybank_session",
    "openhands_session",
    "probe_keys",
    "tool_session",
]


