"""``freemem bench gated``: what GRU-Mem's gates save in calls and tokens when the decisions are right.

On the long-context HotpotQA set (``hotpot_longctx_synth_16k.jsonl``: each question's 10 paragraphs plus
distractor paragraphs, ~16k tokens, gold passages at known places) a :class:`~freemem.langgraph.gated.GatedReader`
reads every document chunk by chunk three ways, side by side on the same inputs and the same agent:

* **gated + exit** — update gate and exit gate honoured (GRU-Mem with early exit);
* **gated, no exit** — update gate honoured, every chunk read (GRU-Mem without the exit gate);
* **ungated** — MemAgent: the memory is rewritten every step, every chunk read.

The memory agent is a scripted *oracle* (:class:`OracleMemoryAgent`): it knows the supporting facts from the
data, opens the update gate exactly when a chunk completes a supporting fact, and says ``end`` once all of them
are in memory; in MemAgent mode it rewrites its whole memory every step. So the figures isolate what the gates
save — calls, tokens, peak context — from how well a model learns to set them. No model, no network.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from freemem.core.errors import ConfigError, FormatError
from freemem_bench._common import (
    add_common_arguments,
    bench_counter,
    finish,
    machine_info,
    make_console,
    markdown_table,
    mean,
    print_table,
    progress_bar,
    resolve_data,
    share,
)

__all__ = ["MODES", "OracleMemoryAgent", "Question", "add_arguments", "load_questions", "run"]

DEFAULT_RELATIVE = "hotpotqa_distractor_dev100"
LONG_FILE = "hotpot_longctx_synth_16k.jsonl"
FACTS_FILE = "hotpot_dev_distractor_first100.json"

#: mode name -> (use_exit_gate, use_update_gate)
MODES: dict[str, tuple[bool, bool]] = {
    "gated + exit": (True, True),
    "gated, no exit": (False, True),
    "ungated (MemAgent)": (False, False),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, default_relative=DEFAULT_RELATIVE, png=False,
                         what="the shared data root, the hotpotqa_distractor_dev100 folder, or its .jsonl file")
    p.add_argument("--chunk-tokens", type=int, default=5000, help="tokens per chunk (default 5000)")
    p.add_argument("--memory-tokens", type=int, default=1024, help="memory bound in tokens (default 1024)")


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Question:
    """One long-context question: the document, the gold answer, and the supporting facts the oracle knows
    (``(title, sentence)``; the sentence is None when only titles are known)."""

    id: int
    question: str
    answer: str
    context: str
    facts: list[tuple[str, str | None]]


def _locate(path: Path) -> tuple[Path, Path | None]:
    """The long-context file and (when present) the file with sentence-level supporting facts."""
    if path.is_file():
        folder, long_file = path.parent, path
    else:
        folder = path / DEFAULT_RELATIVE if (path / DEFAULT_RELATIVE).is_dir() else path
        long_file = folder / LONG_FILE
        if not long_file.is_file():
            found = sorted(folder.glob("*.jsonl"))
            if not found:
                raise ConfigError(f"--data {path}: no {LONG_FILE} (or other .jsonl) there")
            long_file = found[0]
    facts_file = folder / FACTS_FILE
    return long_file, facts_file if facts_file.is_file() else None


def _sentence_facts(facts_file: Path) -> dict[str, list[tuple[str, str]]]:
    """Question text -> its supporting ``(title, sentence)`` pairs, from the HotpotQA column layout."""
    rows = json.loads(facts_file.read_text(encoding="utf-8"))
    out: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        ctx = row.get("context") or {}
        paragraphs = dict(zip(ctx.get("title", []), ctx.get("sentences", [])))
        facts = []
        sf = row.get("supporting_facts") or {}
        for title, sent_id in zip(sf.get("title", []), sf.get("sent_id", [])):
            sentences = paragraphs.get(title, [])
            if 0 <= sent_id < len(sentences) and sentences[sent_id].strip():
                facts.append((title, sentences[sent_id].strip()))
        out[row["question"]] = facts
    return out


def load_questions(path: Path, limit: int | None = None) -> list[Question]:
    """Read the long-context questions (and sentence facts when available).

    Raises:
        FormatError: a line is not a JSON object with ``question``, ``answer`` and ``context``.
    """
    long_file, facts_file = _locate(path)
    sentences = _sentence_facts(facts_file) if facts_file else {}
    questions: list[Question] = []
    with long_file.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            if limit is not None and len(questions) >= limit:
                break
            try:
                row = json.loads(line)
                q, a, ctx = row["question"], str(row["answer"]), row["context"]
            except (ValueError, KeyError, TypeError) as exc:
                raise FormatError(f"{long_file}:{n + 1}: not a long-context question ({exc})") from None
            facts: list[tuple[str, str | None]] = [
                (t, s) for t, s in sentences.get(q, []) if s in ctx]
            if not facts:  # titles only: a passage counts as seen when its title line is read
                facts = [(t, None) for t in row.get("supporting_titles", [])]
            questions.append(Question(id=row.get("id", n), question=q, answer=a, context=ctx, facts=facts))
    if not questions:
        raise ConfigError(f"{long_file}: no questions")
    return questions


# ---------------------------------------------------------------------------------------------- oracle

_CHUNK = re.compile(r"<chunk[^>]*>\n(.*)\n</chunk>", re.S)
_MEMORY = re.compile(r"<current_memory>\n(.*)\n</current_memory>", re.S)


class OracleMemoryAgent(BaseChatModel):
    """A scripted memory agent that knows the supporting facts (a LangChain chat model, for the real reader).

    It remembers what it has read so far (so a fact split across two chunks counts when its second half is
    read), opens the update gate when a chunk completes a fact not yet in memory, writes the old memory plus
    ``title: sentence`` lines, and says ``end`` once every fact is in memory. With ``rewrite_every_step`` (the
    MemAgent baseline) it writes the whole memory every step. On the answer prompt it gives the gold answer.
    """

    facts: list[tuple[str, str | None]]
    answer: str
    rewrite_every_step: bool = False
    read_so_far: str = ""

    @staticmethod
    def _line(fact: tuple[str, str | None]) -> str:
        title, sentence = fact
        return f"{title}: {sentence}" if sentence else f"{title}: (supporting passage)"

    def _seen(self, fact: tuple[str, str | None]) -> bool:
        title, sentence = fact
        return sentence in self.read_so_far if sentence else f"\n{title}\n" in self.read_so_far

    def reply(self, prompt: str) -> str:
        """The oracle's answer to one prompt (memory step or answer step)."""
        chunk = _CHUNK.search(prompt)
        if chunk is None:
            return f"<answer>{self.answer}</answer>"
        memory_match = _MEMORY.search(prompt)
        memory = memory_match.group(1) if memory_match else ""
        memory = "" if memory == "No memory yet." else memory
        self.read_so_far += chunk.group(1)
        new = [self._line(f) for f in self.facts if self._seen(f) and self._line(f) not in memory]
        candidate = "\n".join(filter(None, [memory, *new]))
        done = all(self._line(f) in candidate for f in self.facts)
        if self.rewrite_every_step:
            return f"<memory>{candidate}</memory>"
        body = candidate if new else ""
        return (f"<update>{'yes' if new else 'no'}</update>\n<memory>{body}</memory>\n"
                f"<exit>{'end' if done else 'continue'}</exit>")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = self.reply(str(messages[-1].content))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    @property
    def _llm_type(self) -> str:
        return "freemem-oracle-memory-agent"


# ------------------------------------------------------------------------------------------------- run


def _read(question: Question, mode: str, args: argparse.Namespace, counter: Any) -> dict[str, Any]:
    from freemem.langgraph.gated import GatedReader

    use_exit, use_update = MODES[mode]
    oracle = OracleMemoryAgent(facts=question.facts, answer=question.answer, rewrite_every_step=not use_update)
    reader = GatedReader(oracle, chunk_tokens=args.chunk_tokens, memory_tokens=args.memory_tokens,
                         use_exit_gate=use_exit, use_update_gate=use_update, counter=counter)
    result = reader.invoke(question.question, question.context)
    recall = share(sum(oracle._line(f) in result.memory for f in question.facts), len(question.facts))
    m = result.metrics()
    m.update(id=question.id, mode=mode, evidence_in_memory=recall, answer_correct=result.answer == question.answer,
             memory_peak=max(m["memory_sizes"], default=0))
    return m


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "questions": len(rows),
        "calls_total": sum(r["calls"] for r in rows),
        "calls_mean": mean(r["calls"] for r in rows),
        "chunks_read_share": share(sum(r["chunks_read"] for r in rows), sum(r["chunks_total"] for r in rows)),
        "exit_position_mean": mean(r["exit_position"] + 1 for r in rows if r["exit_position"] is not None),
        "peak_context_mean": mean(r["peak_context"] for r in rows),
        "peak_context_max": max(r["peak_context"] for r in rows),
        "tokens_mean": mean(r["total_tokens"] for r in rows),
        "output_tokens_mean": mean(r["output_tokens"] for r in rows),
        "memory_updates_mean": mean(r["updates"] for r in rows),
        "memory_peak_max": max(r["memory_peak"] for r in rows),
        "evidence_in_memory": mean(r["evidence_in_memory"] or 0.0 for r in rows),
        "answers_correct": share(sum(r["answer_correct"] for r in rows), len(rows)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three modes on every question; print a table; return (and write ``--json``) the figures."""
    for name in ("chunk_tokens", "memory_tokens"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    path = resolve_data(args.data, DEFAULT_RELATIVE)
    questions = load_questions(path, args.limit)
    counter = bench_counter(args.counter)
    console = make_console(getattr(args, "quiet", False))
    rows: list[dict[str, Any]] = []
    with progress_bar(console, not getattr(args, "quiet", False)) as bar:
        task = bar.add_task("gated", total=len(questions) * len(MODES)) if bar else None
        for question in questions:
            for mode in MODES:
                rows.append(_read(question, mode, args, counter))
                if bar is not None and task is not None:
                    bar.advance(task)
    modes = {mode: _summary([r for r in rows if r["mode"] == mode]) for mode in MODES}
    base = modes["ungated (MemAgent)"]
    for figures in modes.values():
        figures["calls_vs_ungated"] = share(figures["calls_total"], base["calls_total"])
        figures["tokens_vs_ungated"] = share(figures["tokens_mean"], base["tokens_mean"])
    # calls: total model calls (memory steps + answers); read: share of chunks read; exit at: mean 1-based
    # chunk where reading stopped; tokens/q: prompt + output tokens per question; peak: largest call context.
    columns = ["mode", "calls", "calls/q", "read", "exit at", "tokens/q", "output/q", "peak mean",
               "peak max", "memory max", "evidence", "calls ×", "tokens ×"]
    table_rows = [[mode, f["calls_total"], f"{f['calls_mean']:.2f}", f"{f['chunks_read_share']:.1%}",
                   "–" if f["exit_position_mean"] is None else f"{f['exit_position_mean']:.2f}",
                   f"{f['tokens_mean']:,.0f}", f"{f['output_tokens_mean']:,.0f}", f"{f['peak_context_mean']:,.0f}",
                   f"{f['peak_context_max']:,}", f["memory_peak_max"], f"{f['evidence_in_memory']:.0%}",
                   f"{f['calls_vs_ungated']:.2f}", f"{f['tokens_vs_ungated']:.2f}"] for mode, f in modes.items()]
    title = (f"freemem bench gated — {len(questions)} HotpotQA questions, {args.chunk_tokens:,}-token chunks, "
             f"{args.memory_tokens:,}-token memory, oracle memory agent ({counter.name} tokens; × = vs ungated)")
    print_table(console, title, columns, table_rows)
    result = {
        "benchmark": "gated", "data": str(path), "questions": len(questions), "counter": counter.name,
        "chunk_tokens": args.chunk_tokens, "memory_tokens": args.memory_tokens,
        "chunks_per_question_mean": mean(r["chunks_total"] for r in rows),
        "facts": "sentences" if any(s for q in questions for _t, s in q.facts) else "titles",
        "modes": modes, "markdown": markdown_table(columns, table_rows), "machine": machine_info(),
        "per_question": [{k: v for k, v in r.items() if k != "memory_sizes"} for r in rows],
    }
    return finish(args, result)
