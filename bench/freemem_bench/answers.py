"""A real local model answers questions from each policy's context: ``freemem bench long --answer-model GGUF``.

Whether the facts a question asks about are *in* the context (``freemem bench long``'s gold-present figure) is a
proxy; what a user cares about is whether a model given that context answers right. :class:`LocalAnswerer` loads
a GGUF model in process with llama.cpp (``llama-cpp-python``, CPU) and answers each question from a message list
(the context a policy kept, then the question), greedily, in a few words; :func:`token_f1` scores an answer
against the gold answer the way SQuAD does (lower-cased, punctuation and articles off, token overlap).

All questions of one context are asked in a row: the prompts share the context as their prefix, and llama.cpp
reuses the evaluated prefix of the previous prompt, so each question costs its own tokens, not the context's.
The model is opt-in (never a dependency): ``../shared/models/get-qwen-coder 0.5b`` (or ``1.5b``) assembles one
and prints its path.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freemem.core.errors import ConfigError
from freemem.optional import require_extra

__all__ = ["ANSWER_INSTRUCTION", "LocalAnswerer", "normalize_answer", "token_f1"]

#: What the question message adds after the question. It offers no way out ("say unknown if it was not said"):
#: given one, Qwen2.5-Coder 1.5B answered "unknown" to 23 and 24 of 27 MemoryBank questions from freemem's and
#: trim's contexts, also where the answer stood verbatim in the recent turns ("Arknights" and "Tekken" for "What
#: are the games that you shared with me?") or in the digest (the books it recommended), so F1 measured the
#: refusals, not the contexts (``docs/chat.md``). An answer the context cannot give scores 0 either way.
ANSWER_INSTRUCTION = ("Answer from what was said in this conversation, in a few words (names, titles, places "
                      "or a short phrase).")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’…")


def normalize_answer(text: str) -> list[str]:
    """``text``'s tokens as SQuAD compares them: lower-cased, without punctuation and articles."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 of ``prediction`` against ``gold`` (0 when either has no token)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _role(msg: Any) -> str:
    kind = getattr(msg, "type", None) or (msg.get("role") if isinstance(msg, dict) else None)
    return {"human": "user", "ai": "assistant", "tool": "user", "developer": "system"}.get(str(kind), str(kind))


def _text(msg: Any) -> str:
    content = getattr(msg, "content", None) if not isinstance(msg, dict) else msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                         if isinstance(p, str) or isinstance(p, dict))
    return ""


def chat_prompt(context: Sequence[Any], question: str) -> list[dict[str, str]]:
    """``context`` (LangChain messages or dicts) as plain chat messages, then the question: tool results read as
    user text (the chat models this runs need not know tools); consecutive messages of one role stay apart."""
    out = [{"role": _role(m), "content": _text(m)} for m in context if _text(m)]
    out.append({"role": "user", "content": f"{question}\n{ANSWER_INSTRUCTION}"})
    return out


class LocalAnswerer:
    """A GGUF chat model on llama.cpp (CPU) that answers questions from a context, greedily.

    Args:
        model_path: the ``.gguf`` file.
        n_ctx: the context window to allocate (the longest context plus a question and its answer).
        threads: CPU threads.
        max_tokens: the longest answer.
        log: a file that gets one JSON line per answer as it comes (label, question, answer, seconds), so a long
            run that is stopped keeps what it answered; appended to.

    Raises:
        ConfigError: the file does not exist, or ``n_ctx`` / ``threads`` / ``max_tokens`` is not positive.
        MissingExtraError: llama-cpp-python is not installed (``pip install 'freemem[llamacpp]'``).
    """

    def __init__(self, model_path: str | Path, *, n_ctx: int = 16_384, threads: int = 2, max_tokens: int = 32,
                 log: str | Path | None = None) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(f"--answer-model {model_path}: no such file (../shared/models/get-qwen-coder prints one)")
        if n_ctx < 512 or threads < 1 or max_tokens < 1:
            raise ConfigError("the answer model needs n_ctx >= 512, threads >= 1 and max_tokens >= 1")
        require_extra("llamacpp", "llama_cpp", what="--answer-model")
        import llama_cpp
        self.path = path
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_batch=512,
                                   verbose=False)
        self.seconds = 0.0
        self.calls = 0
        self.log = Path(log) if log is not None else None

    def _fit(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Drop the oldest context messages (after a system message) until the prompt fits the window."""
        room = self.n_ctx - self.max_tokens - 64
        while len(messages) > 2:
            size = sum(len(self.llm.tokenize(m["content"].encode("utf-8"), add_bos=False)) + 6 for m in messages)
            if size <= room:
                break
            messages.pop(1 if messages[0]["role"] == "system" else 0)
        return messages

    def answer(self, context: Sequence[Any], question: str, *, label: str = "") -> str:
        """The model's answer to ``question`` given ``context`` (``label``: what the log line says it is)."""
        t0 = time.perf_counter()
        result = self.llm.create_chat_completion(messages=self._fit(chat_prompt(context, question)),
                                                 temperature=0.0, max_tokens=self.max_tokens)
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        self.calls += 1
        text = " ".join(str(result["choices"][0]["message"].get("content") or "").split())
        if self.log is not None:
            with self.log.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"label": label, "question": question, "answer": text,
                                    "seconds": round(seconds, 2)}, ensure_ascii=False) + "\n")
        return text

    def describe(self) -> dict[str, Any]:
        return {"model": self.path.name, "instruction": ANSWER_INSTRUCTION, "n_ctx": self.n_ctx,
                "max_tokens": self.max_tokens, "calls": self.calls,
                "seconds": round(self.seconds, 1)}
