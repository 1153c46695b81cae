"""Writing field edits back into messages: dict (OpenAI-format) and LangChain messages, string and
multi-part content, and tool-call argument strings spliced inside their JSON so that only the removed
bytes change (escapes elsewhere stay as written). Edited messages are copies; ids never change."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from freemem.core.blocks import block_rule
from freemem.core.errors import ConfigError
from freemem.core.json_args import arg_strings, decode_literal, encode_like, parse_arg_field, splice_literal

__all__ = ["ArgPiece", "edit_messages"]

#: One replaced range of a tool-call argument string: ``(start, end, text, encoded)`` — decoded offsets in the
#: field's value before the edit, the decoded replacement, and the replacement as JSON-encoded text to write
#: (None: encode ``text`` the way the string was encoded).
ArgPiece = tuple[int, int, str, str | None]


# ---------------------------------------------------------------------------------------------------------
# writing field edits back into messages

_PART = re.compile(r"content\[(\d+)\]")


def edit_messages(messages: Sequence[Any], field_edits: dict[tuple[int | None, str], str], *,
                  arg_pieces: dict[tuple[int | None, str], list[ArgPiece]] | None = None) -> list[Any]:
    """Return ``messages`` with the edited fields replaced. Edited messages are copies; others are shared.

    ``arg_pieces`` names, for argument-string fields, the ranges that changed: only their bytes of the
    arguments JSON are rewritten (others keep their escapes as written). Without them a changed argument
    string is re-encoded whole (JSON-equal)."""
    by_index: dict[int, dict[str, str]] = {}
    for (index, fname), value in field_edits.items():
        if index is None:
            raise ConfigError("plain-text edits cannot be written into messages")
        by_index.setdefault(index, {})[fname] = value
    pieces_by_index: dict[int, dict[str, list[ArgPiece]]] = {}
    for (index, fname), plist in (arg_pieces or {}).items():
        if index is not None:
            pieces_by_index.setdefault(index, {})[fname] = plist
    out = list(messages)
    for index, edits in by_index.items():
        msg = messages[index]
        pieces = pieces_by_index.get(index, {})
        out[index] = _edit_dict(msg, edits, pieces) if isinstance(msg, dict) else _edit_langchain(msg, edits, pieces)
    return out


def _split_arg_edits(edits: dict[str, str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Text-field edits, and argument-string edits grouped by tool-call index."""
    text: dict[str, str] = {}
    args: dict[int, dict[str, str]] = {}
    for name, value in edits.items():
        parsed = parse_arg_field(name)
        if parsed is None:
            text[name] = value
        else:
            args.setdefault(parsed[0], {})[parsed[1]] = value
    return text, args


def _call_pieces(pieces: dict[str, list[ArgPiece]], k: int) -> dict[str, list[ArgPiece]]:
    """The argument pieces of tool call ``k``, by key."""
    out: dict[str, list[ArgPiece]] = {}
    for name, plist in pieces.items():
        parsed = parse_arg_field(name)
        if parsed is not None and parsed[0] == k:
            out[parsed[1]] = plist
    return out


def _splice_args(raw: str, values: dict[str, str], pieces: dict[str, list[ArgPiece]] | None = None) -> str:
    """``raw`` JSON with the named top-level string values replaced, everything else byte-identical.

    With ``pieces`` for a key only those ranges of its encoded string are rewritten (the replacement's given
    encoding, else encoded like the string) — checked to decode to ``values[key]``; otherwise, or without
    pieces, the whole string is re-encoded like the original."""
    found = {a.key: a for a in arg_strings(raw, min_chars=0)}
    missing = set(values) - set(found)
    if missing:
        raise ConfigError(f"tool-call arguments have no string value {sorted(missing)}")
    for key in sorted(values, key=lambda k: -found[k].start):
        a = found[key]
        literal = raw[a.start:a.end]
        new = _splice_pieces(literal, (pieces or {}).get(key))
        if new is None or decode_literal(new) != values[key]:
            new = encode_like(values[key], literal)
        raw = raw[:a.start] + new + raw[a.end:]
    return raw


def _splice_pieces(literal: str, plist: list[ArgPiece] | None) -> str | None:
    if not plist:
        return None
    ordered = sorted(plist, key=lambda p: p[0])
    try:
        return splice_literal(literal, [(s, e, enc if enc is not None else encode_like(text, literal)[1:-1])
                                        for s, e, text, enc in ordered])
    except ValueError:  # offsets past the string: it is not the one the pieces were made on
        return None


def _edit_dict_calls(calls: list[Any], arg_edits: dict[int, dict[str, str]],
                     pieces: dict[str, list[ArgPiece]]) -> list[Any]:
    calls = list(calls)
    for k, values in arg_edits.items():
        call = dict(calls[k])
        fn = call.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            call["function"] = {**fn, "arguments": _splice_args(fn["arguments"], values, _call_pieces(pieces, k))}
        elif isinstance(call.get("args"), dict):
            call["args"] = {**call["args"], **values}
        else:
            raise ConfigError(f"tool call {k} has no editable arguments")
        calls[k] = call
    return calls


def _new_content(content: Any, edits: dict[str, str]) -> Any:
    if "content" in edits:
        return edits["content"]
    parts = [(int(m.group(1)), v) for k, v in edits.items() if (m := _PART.fullmatch(k))]
    if not parts:
        return content
    content = copy.copy(content)
    for i, value in parts:
        part = content[i]
        if isinstance(part, str):
            content[i] = value
        else:
            # Where the block keeps its text: the table's row (freemem.core.blocks). Kept blocks never get here
            # from a clean (their regions are protected); a restore may put an older archive's text back.
            rule = block_rule(part)
            if rule.text_key is None:
                raise ConfigError(f"content block {i} ({rule.name}) has no text to edit")
            part = dict(part)
            part[rule.text_key] = value
            content[i] = part
    return content


def _edit_dict(msg: dict[str, Any], edits: dict[str, str], pieces: dict[str, list[ArgPiece]]) -> dict[str, Any]:
    edits, arg_edits = _split_arg_edits(edits)
    new = dict(msg)
    if arg_edits:
        new["tool_calls"] = _edit_dict_calls(msg.get("tool_calls") or [], arg_edits, pieces)
    if not edits:
        return new
    new["content"] = _new_content(msg.get("content"), edits)
    for key in ("reasoning_content", "reasoning"):
        if key in edits:
            new[key] = edits[key]
    return new


def _edit_langchain(msg: Any, edits: dict[str, str], pieces: dict[str, list[ArgPiece]]) -> Any:
    edits, arg_edits = _split_arg_edits(edits)
    update: dict[str, Any] = {"content": _new_content(msg.content, edits)}
    if arg_edits:
        calls = list(msg.tool_calls)
        raw_calls = list((msg.additional_kwargs or {}).get("tool_calls") or [])
        for k, values in arg_edits.items():
            call = dict(calls[k])
            call["args"] = {**call["args"], **values}
            calls[k] = call
            # The provider's raw form, when the message keeps one, follows (same call id).
            for j, raw in enumerate(raw_calls):
                fn = raw.get("function") if isinstance(raw, dict) else None
                if raw.get("id") == call.get("id") and isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    try:
                        raw_calls[j] = {**raw, "function": {**fn, "arguments": _splice_args(
                            fn["arguments"], values, _call_pieces(pieces, k))}}
                    except ConfigError:
                        pass
        update["tool_calls"] = calls
        if raw_calls:
            update["additional_kwargs"] = {**msg.additional_kwargs, "tool_calls": raw_calls}
    if "reasoning_content" in edits:
        kwargs = dict(update.get("additional_kwargs", msg.additional_kwargs))
        kwargs["reasoning_content"] = edits["reasoning_content"]
        update["additional_kwargs"] = kwargs
    return msg.model_copy(update=update)
