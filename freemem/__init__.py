"""freemem — a ``free()`` for LLM agents.

The core (:mod:`freemem.core`, :mod:`freemem.tokens`) works on plain text and plain message lists and imports
no LangGraph, Redis or HTTP code; :mod:`freemem.memory` drives it, :mod:`freemem.cleaners` and
:mod:`freemem.policies` decide what to delete. Integrations live in subpackages: ``freemem.langgraph``,
``freemem.redis``, ``freemem.serving``. Every public name is importable from here.
"""

from freemem.archives import Archive, AsyncArchive, InMemoryArchive, Restored, SearchHit, SqliteArchive
from freemem.cleaners.heuristic import HeuristicCleaner
from freemem.config import Budget, CachePolicy, FoldPolicy, RoundPolicy, Triggers
from freemem.core.anchors import AnchorMaker
from freemem.core.apply import apply_commands
from freemem.core.archive import (
    ArchiveMismatch,
    restore_event,
    restore_messages,
    restore_rounds,
    restore_text,
)
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import COMMANDS_JSON_SCHEMA, Command, ParseResult, parse_commands
from freemem.core.context import Context, Protection, Region
from freemem.core.errors import (
    CleanerConfigError,
    CleanerError,
    CleanerTimeout,
    CleanerUnavailable,
    ConfigError,
    FormatError,
    FreememError,
    MissingExtraError,
    ServeError,
    StoreConnectionError,
    StoreError,
    TokenizerError,
)
from freemem.core.folding import FoldRecord
from freemem.core.ledger import CleanEvent
from freemem.core.outcome import AppliedSpan, Outcome, Rejection
from freemem.core.pairing import pairing_violations
from freemem.core.rendering import RenderedContext, RenderOptions, render_context
from freemem.engine.triggers import EveryNTokens, LoopDetected, OverBudget, Trigger
from freemem.memory import CleanResult, FreeMemory
from freemem.policy import MemoryPolicy
from freemem.tokens import ApproxCounter, CachedCounter, Qwen3Counter, TiktokenCounter, TokenCounter, get_counter

__version__ = "0.1.0"

__all__ = [
    "Triggers",
    "RoundPolicy",
    "FoldPolicy",
    "CachePolicy",
    "Budget",
    "AnchorMaker",
    "Archive",
    "AppliedSpan",
    "ApproxCounter",
    "ArchiveMismatch",
    "AsyncArchive",
    "COMMANDS_JSON_SCHEMA",
    "CachedCounter",
    "CleanEvent",
    "CleanResult",
    "Cleaner",
    "CleanerConfigError",
    "CleanerError",
    "CleanerTimeout",
    "CleanerUnavailable",
    "Command",
    "ConfigError",
    "Context",
    "EveryNTokens",
    "FoldRecord",
    "FormatError",
    "FreeMemory",
    "FreememError",
    "HeuristicCleaner",
    "InMemoryArchive",
    "Restored",
    "SearchHit",
    "SqliteArchive",
    "LoopDetected",
    "MissingExtraError",
    "MemoryPolicy",
    "Outcome",
    "OverBudget",
    "ParseResult",
    "Proposal",
    "Protection",
    "Qwen3Counter",
    "Region",
    "Rejection",
    "RenderOptions",
    "RenderedContext",
    "ServeError",
    "StoreConnectionError",
    "StoreError",
    "TiktokenCounter",
    "TokenCounter",
    "TokenizerError",
    "Trigger",
    "apply_commands",
    "get_counter",
    "pairing_violations",
    "parse_commands",
    "render_context",
    "restore_event",
    "restore_messages",
    "restore_rounds",
    "restore_text",
]
