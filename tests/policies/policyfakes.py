"""Test kit for the policies: a chat model scripted per call that records what it is sent, and generators of
long inputs (needle-in-a-haystack over seeded filler text, multi-hop documents)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Step = str | AIMessage | Exception | Callable[[list[BaseMessage]], "str | AIMessage"]


class ScriptedChatModel(BaseChatModel):
    """Answers call *i* with ``script[i]``: a text, an AIMessage, an exception to raise, or a function of the
    messages. Records every request (messages and bound kwargs such as ``max_tokens``)."""

    script: list[Any] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)
    kwargs_seen: list[dict[str, Any]] = Field(default_factory=list)
    i: int = 0

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        self.kwargs_seen.append(dict(kwargs))
        if self.i >= len(self.script):
            raise AssertionError(f"script exhausted after {self.i} calls")
        step = self.script[self.i]
        self.i += 1
        if isinstance(step, Exception):
            raise step
        if callable(step):
            step = step(messages)
        message = step if isinstance(step, AIMessage) else AIMessage(content=step)
        return ChatResult(generations=[ChatGeneration(message=message)])

    @property
    def _llm_type(self) -> str:
        return "scripted-policy-fake"


class FunctionChatModel(BaseChatModel):
    """Answers every call with ``fn(messages)``; records the requests."""

    fn: Any
    received: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        out = self.fn(messages)
        message = out if isinstance(out, AIMessage) else AIMessage(content=out)
        return ChatResult(generations=[ChatGeneration(message=message)])

    @property
    def _llm_type(self) -> str:
        return "function-policy-fake"


def cut_off(text: str) -> AIMessage:
    """A reply the server stopped at the token limit."""
    return AIMessage(content=text, response_metadata={"finish_reason": "length"})


# ------------------------------------------------------------------------------------------ generators

_WORDS = ("river stone garden window letter market winter orange silver engine paper mountain quiet "
          "station forest candle bridge harbor lantern meadow copper velvet thunder pocket marble").split()


def filler(n_sentences: int, seed: int) -> list[str]:
    """Seeded filler sentences (no digits, so needles stand out)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(n_sentences)]


def haystack(needles: Sequence[str], positions: Sequence[float], n_sentences: int = 2000,
             seed: int = 0) -> str:
    """Filler paragraphs with each needle inserted at a relative position (0..1) of the sentence list."""
    sentences = filler(n_sentences, seed)
    for needle, pos in sorted(zip(needles, positions), key=lambda p: -p[1]):
        sentences.insert(int(pos * len(sentences)), needle)
    paragraphs = [" ".join(sentences[i:i + 6]) for i in range(0, len(sentences), 6)]
    return "\n\n".join(paragraphs)


def multihop_document(seed: int = 1, n_sentences: int = 1500) -> tuple[str, str, list[str], str]:
    """A two-hop question over a long document: (document, question, evidence sentences, answer)."""
    hop1 = "The violinist Arna Kestrel was born in the town of Velmora."
    hop2 = "Velmora is the capital of the province of Ostrava Minor."
    doc = haystack([hop1, hop2], [0.2, 0.55], n_sentences=n_sentences, seed=seed)
    return doc, "In which province was the violinist Arna Kestrel born?", [hop1, hop2], "Ostrava Minor"


# ---------------------------------------------------------------------------------- scripted agents

_CHUNK = re.compile(r"<chunk[^>]*>\n(.*)\n</chunk>", re.S)
_MEMORY = re.compile(r"<current_memory>\n(.*)\n</current_memory>", re.S)


def chunk_of(messages: Sequence[BaseMessage]) -> str:
    return _CHUNK.search(str(messages[-1].content)).group(1)


def memory_of(messages: Sequence[BaseMessage]) -> str:
    memory = _MEMORY.search(str(messages[-1].content)).group(1)
    return "" if memory == "No memory yet." else memory


def gated_reply(update: bool, memory: str, exit_: bool, think: str = "checked the chunk") -> str:
    return (f"<think>{think}</think>\n<update>{'yes' if update else 'no'}</update>\n<memory>{memory}</memory>\n"
            f"<exit>{'end' if exit_ else 'continue'}</exit>")


def evidence_agent(evidence: Sequence[str], answer: str) -> Callable[[list[BaseMessage]], str]:
    """A memory agent that updates only on chunks holding evidence and exits once all of it is in memory;
    on the answer prompt it answers when the memory holds all the evidence."""
    def reply(messages: list[BaseMessage]) -> str:
        text = str(messages[-1].content)
        if "<chunk" not in text:
            return f"<answer>{answer}</answer>" if all(e in text for e in evidence) else "<answer>unknown</answer>"
        chunk, memory = chunk_of(messages), memory_of(messages)
        found = [e for e in evidence if e in chunk and e not in memory]
        new_memory = "\n".join(filter(None, [memory, *found]))
        done = all(e in new_memory for e in evidence)
        return gated_reply(bool(found), new_memory if found else "", done)
    return reply


def paragraphs_doc(n: int, counter: Any, seed: int = 0) -> tuple[str, int]:
    """``n`` filler paragraphs and a chunk size that puts exactly one paragraph in each chunk."""
    paragraphs = [" ".join(filler(12, seed * 100 + i)) for i in range(n)]
    return "\n\n".join(paragraphs), max(counter.count(p) for p in paragraphs) + 10
