"""What may happen to each content block of a message: one table, :data:`BLOCK_RULES`, read by every path that
turns a message into editable text (:mod:`freemem.core.views`, and through it the context builder, the
cleaners, counting, restore and folding).

Providers sign some of what their models write and check it when it comes back: Anthropic ``thinking`` blocks
carry a ``signature`` (and ``redacted_thinking`` an encrypted ``data``), OpenAI Responses ``reasoning`` items an
``encrypted_content``, Gemini thought signatures sit on thinking, text and function-call parts. A request whose
signed block was modified is rejected, so such a block is **kept**: byte-identical for as long as its message
stays, and it leaves only whole, with its message (a fold or a summary, archived and restorable like any
deletion), never from the latest assistant turn (see :func:`freemem.core.context.protected_messages`). A text
block whose ``citations`` / ``annotations`` point into its text (OpenAI gives character offsets) is kept too:
cutting its text would leave citations that cite nothing or the wrong characters. Images, documents, tool-use
blocks and unknown block types are never cut.

Everything here is plain dicts: LangChain's shapes of these blocks (content blocks of ``AIMessage.content``,
the v1 standard ``{"type": "reasoning", "extras": {"signature": ...}}``, Gemini's function-call signatures in
``additional_kwargs``) are read by key, with no LangChain import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BLOCK_RULES",
    "GEMINI_CALL_SIGNATURES_KEY",
    "SIGNATURE_KEYS",
    "SIGNED_REASONING_KEYS",
    "BlockRule",
    "block_rule",
    "block_text",
    "is_signed",
    "signed_call_ids",
    "signed_reasoning_field",
]

#: Keys that carry what a provider signed or encrypted, on a block, in its ``extras`` or one level further in.
SIGNATURE_KEYS = frozenset({"signature", "thought_signature", "thoughtSignature", "encrypted_content"})

#: Where ``langchain-google-genai`` keeps function-call thought signatures: ``{tool_call_id: signature}``.
GEMINI_CALL_SIGNATURES_KEY = "__gemini_function_call_thought_signatures__"

Fate = Literal["edit", "keep"]


@dataclass(frozen=True, slots=True)
class BlockRule:
    """One row of the table: which blocks it covers, what may happen to them, and why."""

    #: Short name of the row (shown as the reason of a protected region).
    name: str
    #: ``"edit"``: spans of its text may be cut (replaced by a marker). ``"keep"``: byte-identical while its
    #: message stays; leaves only whole, with its message, and never from the latest assistant turn.
    fate: Fate
    #: The key of the block's text that is shown to the cleaner and counted (None: a placeholder is shown).
    text_key: str | None
    #: Who produces such blocks (for the docs table).
    source: str
    why: str

    @property
    def signed(self) -> bool:
        """Whether the blocks of this row carry what a provider signed or encrypted."""
        return self.name in _SIGNED_ROWS


_SIGNED_THINKING = BlockRule(
    "signed thinking", "keep", "thinking", "Anthropic `thinking` with `signature`; Gemini thought parts (LangChain v0)",
    "the provider checks the signature against the text; a modified block is rejected")
_REDACTED = BlockRule(
    "redacted thinking", "keep", None, "Anthropic `redacted_thinking` (`data` encrypted)",
    "encrypted by the provider; nothing in it is readable or editable")
_RESPONSES_REASONING = BlockRule(
    "provider reasoning item", "keep", None,
    "OpenAI Responses `reasoning` item (`id`, `summary`, `encrypted_content`)",
    "passed back to the provider as it came (by id or encrypted content)")
_SIGNED_REASONING = BlockRule(
    "signed reasoning", "keep", "reasoning",
    "LangChain v1 `reasoning` block with `extras.signature` / `extras.encrypted_content`",
    "the same signed thinking in LangChain's standard form")
_SIGNED_TEXT = BlockRule(
    "signed text", "keep", "text", "Gemini text part with a thought signature (`extras.signature`)",
    "the signature covers the part it came with")
_CITED_TEXT = BlockRule(
    "text with citations", "keep", "text",
    "Anthropic `text` with `citations`; OpenAI / LangChain `text` with `annotations`",
    "citations point into the text (OpenAI by character offsets): cutting it would break them")
_SIGNED_OTHER = BlockRule(
    "signed block", "keep", None, "any other block carrying a `signature` or `encrypted_content`",
    "whatever a provider signed is never edited")
_TEXT = BlockRule("text", "edit", "text", "plain `text` / `input_text` / `output_text` blocks and string parts",
                  "plain text the model reads")
_THINKING = BlockRule(
    "unsigned thinking", "edit", "thinking", "`thinking` without a signature (local models)",
    "nothing checks it; it is text like any other")
_REASONING = BlockRule(
    "unsigned reasoning", "edit", "reasoning", "LangChain v1 `reasoning` without signature (e.g. DeepSeek)",
    "nothing checks it; it is text like any other")
_TOOL_USE = BlockRule(
    "tool use", "keep", None, "`tool_use`, `server_tool_use`, `tool_call`, `function_call`, tool results",
    "structure the provider parses; a call's arguments are edited through `tool_calls` only")
_MEDIA = BlockRule(
    "image / document / media", "keep", None, "`image`, `image_url`, `input_image`, `document`, `file`, audio",
    "binary or remote data; never cut")
_UNKNOWN = BlockRule("other block", "keep", None, "any block type not listed here", "unknown structure is not ours to cut")

#: The table, in the order it is read (the first row that matches a block wins). Exported for the docs
#: (``docs/content-blocks.md`` lists the same rows).
BLOCK_RULES: tuple[BlockRule, ...] = (
    _REDACTED, _SIGNED_THINKING, _RESPONSES_REASONING, _SIGNED_REASONING, _SIGNED_TEXT, _SIGNED_OTHER,
    _CITED_TEXT, _TEXT, _THINKING, _REASONING, _TOOL_USE, _MEDIA, _UNKNOWN,
)

_SIGNED_ROWS = frozenset(r.name for r in (_REDACTED, _SIGNED_THINKING, _RESPONSES_REASONING, _SIGNED_REASONING,
                                           _SIGNED_TEXT, _SIGNED_OTHER))

#: Block types whose ``text`` is plain text: LangChain / Anthropic / Chat Completions ``text``, OpenAI Responses
#: ``input_text`` / ``output_text``.
_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})

_TOOL_TYPES = frozenset({
    "tool_use", "server_tool_use", "tool_call", "tool_call_chunk", "invalid_tool_call", "function_call",
    "function_call_output", "tool_result", "web_search_tool_result", "code_execution_tool_result",
    "server_tool_call", "server_tool_result", "mcp_tool_use", "mcp_tool_result", "computer_call",
})
_MEDIA_TYPES = frozenset({
    "image", "image_url", "input_image", "document", "file", "input_file", "audio", "input_audio", "video",
    "media", "text-plain", "search_result", "container_upload",
})


def _has_signature(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` (a block) holds a non-empty signature key, on itself or up to two dicts/lists in
    (``extras``, Bedrock's ``reasoning_content``...). Bounded: a hostile block cannot make this recurse deep."""
    if depth > 2:
        return False
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in SIGNATURE_KEYS and item:
                return True
            if isinstance(item, (Mapping, list)) and _has_signature(item, depth + 1):
                return True
    elif isinstance(value, list):
        return any(isinstance(item, (Mapping, list)) and _has_signature(item, depth + 1) for item in value[:64])
    return False


def is_signed(block: Any) -> bool:
    """Whether a content block carries what a provider signed or encrypted (and so is never edited)."""
    if not isinstance(block, Mapping):
        return False
    return block.get("type") == "redacted_thinking" or _has_signature(block)


def block_rule(block: Any) -> BlockRule:
    """The row of :data:`BLOCK_RULES` a content block (a part of a message's content list) falls under."""
    if isinstance(block, str):
        return _TEXT
    if not isinstance(block, Mapping):
        return _UNKNOWN
    kind = block.get("type")
    if kind == "redacted_thinking":
        return _REDACTED
    if kind == "reasoning" and ("summary" in block or "encrypted_content" in block):
        return _RESPONSES_REASONING  # the Responses API's own item shape, signed or stored by id
    if _has_signature(block):
        if kind == "thinking" and isinstance(block.get("thinking"), str):
            return _SIGNED_THINKING
        if kind == "reasoning" and isinstance(block.get("reasoning"), str):
            return _SIGNED_REASONING
        if kind in _TEXT_TYPES and isinstance(block.get("text"), str):
            return _SIGNED_TEXT
        return _SIGNED_OTHER
    if kind in _TEXT_TYPES and isinstance(block.get("text"), str):
        return _CITED_TEXT if block.get("citations") or block.get("annotations") else _TEXT
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        return _THINKING
    if kind == "reasoning" and isinstance(block.get("reasoning"), str):
        return _REASONING
    if kind in _TOOL_TYPES:
        return _TOOL_USE
    if kind in _MEDIA_TYPES:
        return _MEDIA
    return _UNKNOWN


def block_text(block: Any, rule: BlockRule | None = None) -> str | None:
    """The text of a block that is shown to the cleaner and counted (its rule's ``text_key``), else None."""
    if isinstance(block, str):
        return block
    rule = rule or block_rule(block)
    if rule.text_key is None or not isinstance(block, Mapping):
        return None
    text = block.get(rule.text_key)
    return text if isinstance(text, str) else None


#: Keys beside a message's reasoning text that hold the same reasoning signed: LiteLLM's ``thinking_blocks``
#: (Anthropic's blocks), OpenRouter's ``reasoning_details`` (``reasoning.text`` with a signature,
#: ``reasoning.encrypted``).
SIGNED_REASONING_KEYS = ("thinking_blocks", "reasoning_details")


def signed_reasoning_field(message: Mapping[str, Any]) -> bool:
    """Whether a message's reasoning text (a dict message's ``reasoning_content`` / ``reasoning``, a LangChain
    message's ``additional_kwargs["reasoning_content"]``) mirrors signed blocks kept beside it: ``message`` is
    the dict message or the ``additional_kwargs``."""
    for key in SIGNED_REASONING_KEYS:
        blocks = message.get(key)
        if isinstance(blocks, list) and any(
                is_signed(b) or (isinstance(b, Mapping) and b.get("type") == "reasoning.encrypted")
                for b in blocks[:256]):
            return True
    return False


def signed_call_ids(calls: Any, kwargs: Mapping[str, Any] | None = None) -> set[str]:
    """Ids of tool calls whose function call a provider signed: Gemini's thought signatures, kept by
    ``langchain-google-genai`` in ``additional_kwargs[GEMINI_CALL_SIGNATURES_KEY]`` or by OpenAI-compatible
    endpoints on the call itself (``extra_content.google.thought_signature``). Their arguments are kept whole."""
    out: set[str] = set()
    sigs = (kwargs or {}).get(GEMINI_CALL_SIGNATURES_KEY)
    if isinstance(sigs, Mapping):
        out.update(str(k) for k, v in sigs.items() if v)
    for call in calls or []:
        if isinstance(call, Mapping) and call.get("id") is not None:
            rest = {k: v for k, v in call.items() if k not in ("function", "args", "arguments")}
            if _has_signature(rest):
                out.add(str(call["id"]))
    return out
