"""The reasoning bench's data: SkyThought long chains of thought and thought-anchors cases, located in the text."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ANCHORS_FILE", "DEFAULT_DATA", "IMPORTANCE_KEY", "SKY_DIR", "AnchorCase", "Trace", "load_anchor_cases", "load_traces"]


DEFAULT_DATA = "."
SKY_DIR = "skythought_longcot"
ANCHORS_FILE = "thought_anchors_r1_chunked_cot/cases.jsonl"
IMPORTANCE_KEY = "counterfactual_importance_accuracy"


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Trace:
    """One reasoning trace: the question it answers and the generated text."""

    label: str
    source: str
    question: str
    text: str
    #: ``tail_loop_unit_chars`` from the data set's ``index.csv`` where one is next to the file (None: unknown).
    index_tail_loop: int | None = None


@dataclass
class AnchorCase:
    """A thought-anchors trace with its chunks located in the text: ``(start, end, importance)``."""

    label: str
    question: str
    text: str
    chunks: list[tuple[int, int, float]]
    chunks_total: int


def _jsonl_files(path: Path, under: str | None = None) -> list[Path]:
    if path.is_file():
        return [path]
    root = path / under if under and (path / under).is_dir() else path
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def _index_csv(files: Sequence[Path]) -> dict[tuple[str, str], int]:
    """``(file name, idx) -> tail_loop_unit_chars`` from any ``index.csv`` next to (or above) the files."""
    out: dict[tuple[str, str], int] = {}
    seen: set[Path] = set()
    for f in files:
        for d in (f.parent, f.parent.parent):
            idx = d / "index.csv"
            if idx in seen or not idx.is_file():
                continue
            seen.add(idx)
            with idx.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    try:
                        out[(row["file"], row["idx"])] = int(row.get("tail_loop_unit_chars") or 0)
                    except (KeyError, ValueError):
                        continue
    return out


def _trace_text(record: dict[str, Any]) -> str | None:
    code = record.get("code")
    if isinstance(code, list) and code and isinstance(code[0], str):
        return code[0]
    for key in ("trace", "text", "output", "completion"):
        if isinstance(record.get(key), str):
            return record[key]
    return None


def load_traces(path: Path, limit: int | None = None) -> list[Trace]:
    """Reasoning traces from a JSONL file or every JSONL file under a folder (``skythought_longcot`` inside the
    shared data folder when present). A record is a trace when ``code[0]`` (the SkyThought/Qwen-Math eval
    format) or a ``trace``/``text``/``output``/``completion`` field is a string; ``question`` (or ``problem``)
    is protected when the trace repeats it. Records of another form are skipped."""
    files = [f for f in _jsonl_files(path, SKY_DIR) if "thought_anchors" not in str(f)]
    index = _index_csv(files)
    out: list[Trace] = []
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
                text = _trace_text(record)
                if not text:
                    continue
                idx = str(record.get("idx", n))
                question = record.get("question") or record.get("problem") or ""
                out.append(Trace(f"{f.stem}#{idx}", f.name, str(question), text, index.get((f.name, idx))))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def load_anchor_cases(path: Path, limit: int | None = None, importance_key: str = IMPORTANCE_KEY) -> list[AnchorCase]:
    """Thought-anchors cases (``base_solution.solution`` and ``chunks_labeled``) from a JSONL file or the
    shared data folder; chunks are found in order in the text (ones not found verbatim are skipped)."""
    if path.is_dir():
        path = path / ANCHORS_FILE if (path / ANCHORS_FILE).is_file() else path
    files = _jsonl_files(path)
    out: list[AnchorCase] = []
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                base = record.get("base_solution") if isinstance(record, dict) else None
                chunks = record.get("chunks_labeled") if isinstance(record, dict) else None
                if not isinstance(base, dict) or not isinstance(chunks, list) or not isinstance(
                        base.get("solution"), str):
                    continue
                text = base["solution"]
                located: list[tuple[int, int, float]] = []
                at = 0
                for chunk in chunks:
                    piece = chunk.get("chunk") if isinstance(chunk, dict) else None
                    if not isinstance(piece, str) or not piece:
                        continue
                    pos = text.find(piece, at)
                    if pos < 0:
                        continue
                    score = chunk.get(importance_key)
                    located.append((pos, pos + len(piece), abs(float(score)) if score is not None else 0.0))
                    at = pos + len(piece)
                label = "/".join(str(record.get(k, "?")) for k in ("model", "condition", "case"))
                out.append(AnchorCase(label, str(base.get("prompt") or ""), text, located, len(chunks)))
                if limit is not None and len(out) >= limit:
                    return out
    return out


