"""Deletion commands and the forgiving parser for cleaner output.

A command names a span by two anchors: ``prefix`` (the span's first characters) and ``suffix`` (its last
characters). Parsing is forgiving about *form* — a bare JSON array, a fenced block, ``{"commands": [...]}``,
prose around it, trailing commas, single objects — and never raises: garbage yields no commands and a reason.
Whether a command *means* anything is decided later, by :func:`freemem.apply_commands`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["COMMANDS_JSON_SCHEMA", "Command", "ParseResult", "parse_commands"]


class Command(BaseModel):
    """Delete the span that starts with ``prefix`` and ends with the first ``suffix`` after it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prefix: str
    suffix: str = ""

    @field_validator("prefix", "suffix", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValueError("anchor must be a string")
        return value


#: JSON schema for constrained decoding (``response_format={"type": "json_schema", ...}``).
COMMANDS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "commands": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"prefix": {"type": "string"}, "suffix": {"type": "string"}},
                "required": ["prefix", "suffix"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["commands"],
    "additionalProperties": False,
}


@dataclass
class ParseResult:
    """What :func:`parse_commands` found: the commands, and why it found none (or skipped some)."""

    commands: list[Command] = field(default_factory=list)
    error: str | None = None
    skipped: int = 0  # well-formed JSON items that were not commands

    @property
    def ok(self) -> bool:
        return self.error is None


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def _candidates(text: str) -> list[str]:
    """Pieces of ``text`` that may hold the JSON, most likely first."""
    out: list[str] = []
    out.extend(m.group(1) for m in _FENCE.finditer(text))
    out.append(text)
    return out


def _decode_from(text: str, start: int) -> tuple[Any, int] | None:
    decoder = json.JSONDecoder()
    try:
        return decoder.raw_decode(text, start)
    except json.JSONDecodeError:
        pass
    # Retry on a copy without trailing commas, from the same start.
    try:
        value, end = decoder.raw_decode(_TRAILING_COMMA.sub(r"\1", text[start:]), 0)
    except json.JSONDecodeError:
        return None
    # Offsets in the comma-free copy undercount; resuming early is harmless (the scan only moves on).
    return value, start + end


def _find_json_values(text: str) -> list[Any]:
    """Every top-level JSON array/object embedded in ``text`` (prose around it is ignored)."""
    values: list[Any] = []
    i = 0
    n = len(text)
    while i < n:
        j_arr = text.find("[", i)
        j_obj = text.find("{", i)
        starts = [j for j in (j_arr, j_obj) if j >= 0]
        if not starts:
            break
        j = min(starts)
        decoded = _decode_from(text, j)
        if decoded is None:
            i = j + 1
            continue
        value, end = decoded
        values.append(value)
        # raw_decode on the comma-free copy returns an offset into that copy; never go backwards.
        i = max(end, j + 1)
    return values


def _commands_from_value(value: Any) -> tuple[list[Command], int] | None:
    """Commands in one decoded JSON value, or None when the value is not a command container at all."""
    if isinstance(value, dict):
        for key in ("commands", "deletions", "edits", "operations", "ops"):
            if key in value and isinstance(value[key], list):
                return _commands_from_value(value[key])
        if "prefix" in value:
            value = [value]
        else:
            return None
    if not isinstance(value, list):
        return None
    commands: list[Command] = []
    skipped = 0
    for item in value:
        if isinstance(item, dict) and "prefix" in item:
            try:
                commands.append(Command.model_validate(item))
            except ValueError:
                skipped += 1
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            commands.append(Command(prefix=item[0], suffix=item[1]))
        else:
            skipped += 1
    if not commands and skipped:
        return None
    return commands, skipped


def parse_commands(text: str | None) -> ParseResult:
    """Parse cleaner output into commands. Never raises.

    >>> parse_commands('Sure! ```json\\n[{"prefix": "a", "suffix": "b"},]\\n```').commands
    [Command(prefix='a', suffix='b')]
    """
    if text is None or not str(text).strip():
        return ParseResult(error="empty output")
    text = _THINK.sub("", str(text))
    if not text.strip():
        return ParseResult(error="output holds only thinking")
    for candidate in _candidates(text):
        for value in _find_json_values(candidate):
            found = _commands_from_value(value)
            if found is not None:
                commands, skipped = found
                return ParseResult(commands=commands, skipped=skipped)
    snippet = text.strip().replace("\n", " ")[:80]
    return ParseResult(error=f"no JSON list of {{prefix, suffix}} commands found in output: {snippet!r}")
