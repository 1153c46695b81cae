"""Tool-call argument strings inside their JSON: a scanner that finds each top-level string value of an
arguments object with its exact byte range (``arg_strings``), the field names that address them
(``tool_calls[k].key``), and the escape-aware helpers that map decoded offsets to encoded ones and splice a
replacement so only the removed bytes change (escapes elsewhere stay as written)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ARG_FIELD_MIN_CHARS", "MAX_ARG_DEPTH", "ArgString", "arg_field_name", "arg_strings", "decode_literal", "encode_like",
           "encoded_offsets", "json_depth", "parse_arg_field", "splice_literal"]

#: String values of tool-call arguments this long or longer can be edited (see ``Protection.tool_arguments``).
ARG_FIELD_MIN_CHARS = 200


#: Tool-call arguments may nest this deep (objects and arrays). Deeper ones are refused with a FormatError
#: when a message is read: parsing, copying or archiving them would hit Python's recursion limit.
MAX_ARG_DEPTH = 128

_ARG_FIELD = re.compile(r"tool_calls\[(\d+)\]\.(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ArgString:
    """A top-level string value of a JSON object: its key, decoded value, and the ``[start, end)`` of its
    encoded form (quotes included) in the JSON text."""

    key: str
    value: str
    start: int
    end: int


def arg_field_name(k: int, key: str) -> str:
    return f"tool_calls[{k}].{key}"


def parse_arg_field(name: str) -> tuple[int, str] | None:
    """``(call index, key)`` of an argument field name, or None for other fields."""
    m = _ARG_FIELD.fullmatch(name)
    return (int(m.group(1)), m.group(2)) if m else None


_DECODER = json.JSONDecoder()
_WS_CHARS = " \t\n\r"


_STRUCTURE = re.compile(r'[\[\]{}"]')


def json_depth(text: str, stop: int | None = None) -> int:
    """How deep objects and arrays nest in the JSON ``text`` (0 for a scalar), found without recursion:
    brackets inside strings do not count. With ``stop``, the scan ends as soon as the depth passes it (the
    result is then ``stop + 1``), and a text with at most ``stop`` brackets is not scanned at all (its depth
    cannot pass ``stop``; the result is then its bracket count, an upper bound)."""
    if stop is not None:
        brackets = text.count("[") + text.count("{")
        if brackets <= stop:
            return brackets
    return _depth_scan(text, stop)


def _depth_scan(text: str, stop: int | None) -> int:
    depth = deepest = 0
    pos = 0
    n = len(text)
    while pos < n:
        m = _STRUCTURE.search(text, pos)
        if m is None:
            break
        ch = m.group()
        pos = m.end()
        if ch == '"':
            # skip the string: the next quote not escaped by an odd run of backslashes
            while True:
                q = text.find('"', pos)
                if q < 0:
                    return deepest
                k = q - 1
                while k >= pos and text[k] == "\\":
                    k -= 1
                pos = q + 1
                if (q - 1 - k) % 2 == 0:
                    break
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop is not None and deepest > stop:
                    return stop + 1
        else:
            depth = max(0, depth - 1)
    return deepest


def arg_strings(raw: str, min_chars: int = ARG_FIELD_MIN_CHARS) -> list[ArgString]:
    """Long top-level string values of the JSON object ``raw`` with their exact positions (empty when
    ``raw`` is not a JSON object).

    Empty as well when a top-level key occurs twice: which value a provider's parser keeps (the first, the
    last, or an error) is not ours to guess, and an edit named by key could land on the other copy's text,
    so such an arguments field is protected whole."""
    if len(raw) < min_chars or not raw.lstrip(_WS_CHARS).startswith("{"):
        return []
    scan = json.decoder.scanstring  # type: ignore[attr-defined]  # public at run time, absent from typeshed
    out: list[ArgString] = []
    keys: set[str] = set()
    try:
        i = raw.index("{") + 1
        n = len(raw)
        while True:
            while i < n and raw[i] in _WS_CHARS:
                i += 1
            if raw[i] == "}":
                break
            if raw[i] != '"':
                return []
            key, i = scan(raw, i + 1)
            if key in keys:
                return []
            keys.add(key)
            while raw[i] in _WS_CHARS:
                i += 1
            if raw[i] != ":":
                return []
            i += 1
            while raw[i] in _WS_CHARS:
                i += 1
            if raw[i] == '"':
                value, end = scan(raw, i + 1)
                if len(value) >= min_chars:
                    out.append(ArgString(key, value, i, end))
            else:
                _, end = _DECODER.raw_decode(raw, i)
            i = end
            while raw[i] in _WS_CHARS:
                i += 1
            if raw[i] == ",":
                i += 1
            elif raw[i] == "}":
                break
            else:
                return []
    except (ValueError, IndexError, RecursionError):  # nested past the recursion limit: kept whole
        return []
    return out


_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_LOW_ESCAPE = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def encoded_offsets(body: str, positions: Sequence[int]) -> list[int]:
    """Where each decoded offset in ``positions`` (ascending) falls in ``body``, the text between the quotes
    of a JSON string literal, counted the way :mod:`json` decodes it: an escape is one character, and so
    is an escaped surrogate pair (``\\ud83d\\ude00``); every other character stands for itself."""
    out: list[int] = []
    targets = iter(positions)
    target = next(targets, None)
    dec = enc = 0
    while target is not None:
        m = _ESCAPE.search(body, enc)
        nxt = len(body) if m is None else m.start()
        while target is not None and target - dec <= nxt - enc:
            out.append(enc + target - dec)
            target = next(targets, None)
        if m is None or target is None:
            break
        dec += nxt - enc + 1
        end = m.end()
        if m.group(1) is not None and 0xD800 <= int(m.group(1), 16) <= 0xDBFF:
            low = _LOW_ESCAPE.match(body, end)
            if low is not None:
                end = low.end()
        enc = end
    if target is not None:
        raise ValueError(f"decoded offset {target} is past the end of the string")
    return out


def splice_literal(literal: str, pieces: Sequence[tuple[int, int, str]]) -> str:
    """``literal`` (an encoded JSON string, quotes included) with each decoded range ``[start, end)`` of
    ``pieces`` (ascending, disjoint) replaced by the given *encoded* text; every other byte stays as it was,
    so escapes the edit does not touch (``\\u00E9``, ``\\/``) are kept exactly."""
    body = literal[1:-1]
    at = encoded_offsets(body, [x for start, end, _text in pieces for x in (start, end)])
    out: list[str] = [literal[0]]
    pos = 0
    for k, (_start, _end, text) in enumerate(pieces):
        out.append(body[pos:at[2 * k]])
        out.append(text)
        pos = at[2 * k + 1]
    out.append(body[pos:])
    out.append(literal[-1])
    return "".join(out)


def decode_literal(literal: str) -> str | None:
    """The value of one encoded JSON string (quotes included), or None when it is not exactly one."""
    try:
        value, end = json.decoder.scanstring(literal, 1)  # type: ignore[attr-defined]  # as above
    except (ValueError, IndexError):
        return None
    return value if literal[:1] == '"' and end == len(literal) else None


def encode_like(value: str, original: str) -> str:
    """JSON-encode ``value`` the way ``original`` (an encoded string) was: ASCII escapes or not."""
    ascii_only = original.isascii() and "\\u" in original
    return json.dumps(value, ensure_ascii=ascii_only)
