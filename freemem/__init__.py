"""freemem — a ``free()`` for LLM agents.

The core (this package's top level) works on plain text and plain message lists and imports no LangGraph,
Redis or HTTP code. Integrations live in subpackages: ``freemem.langgraph``, ``freemem.redis``,
``freemem.serving``.
"""

from freemem.anchors import AnchorMaker
from freemem.apply import AppliedSpan, Outcome, Rejection, apply_commands
from freemem.archive import (
    ArchiveMismatch,
    restore_event,
    restore_messages,
    restore_rounds,
    restore_text,
)
from freemem.archives import Archive, AsyncArchive, InMemoryArchive, Restored, SqliteArchive
from freemem.cleaners.base import Cleaner, Proposal
from freemem.cleaners.heuristic import HeuristicCleaner
from freemem.commands import COMMANDS_JSON_SCHEMA, Command, ParseResult, parse_commands
from freemem.context import Context, Protection, Region
from freemem.errors import (
    CleanerConfigError,
    CleanerError,
    CleanerTimeout,
    CleanerUnavailable,
    ConfigError,
    FormatError,
    FreememError,
    ServeError,
    StoreConnectionError,
    StoreError,
    TokenizerError,
)
from freemem.ledger import CleanEvent
from freemem.memory import CleanResult, FreeMemory
from freemem.folding import FoldRecord
from freemem.pairing import pairing_violations
from freemem.policy import MemoryPolicy
from freemem.policies.triggers import EveryNTokens, LoopDetected, OverBudget, Trigger
from freemem.rendering import RenderedContext, RenderOptions, render_context
from freemem.tokens import ApproxCounter, CachedCounter, Qwen3Counter, TiktokenCounter, TokenCounter, get_counter

__version__ = "0.1.0"

__all__ = [
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
    "SqliteArchive",
    "LoopDetected",
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
