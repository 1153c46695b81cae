"""FreeMemory(fold=FoldPolicy(summarizer=...)): a chat model writes each fold's digest; any failure keeps the extractive one."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from freemem import FreeMemory
from freemem.config import FoldPolicy
from freemem.core.archive import restore_event
from freemem.core.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_folding import build_transcript

SUMMARY = "The user wants checkout fixed (order ORD-77812); the logs under /srv show req-0002-1 failing."


class _Recorder(FakeListChatModel):
    prompts: list[Any] = []

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self.prompts.append(input)
        return super().invoke(input, config, **kwargs)


class _Broken(FakeListChatModel):
    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        raise ConnectionError("summariser down")

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        raise ConnectionError("summariser down")


def _fold_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (msg,) = [m for m in messages if str(m.get("id", "")).startswith("freemem-fold-")]
    return msg


def test_a_model_writes_the_digest_and_the_fold_restores_exactly() -> None:
    msgs = build_transcript(5, 120, chat_share=0.2)
    model = _Recorder(responses=[SUMMARY])
    memory = FreeMemory(counter="approx", budget=3000, fold=FoldPolicy(summarizer=model))
    result = memory.clean(msgs)
    assert result.event.folds
    fold = _fold_message(result.messages)
    header, body = fold["content"].split("\n", 1)
    assert header.startswith("[freemem: ") and body == SUMMARY
    assert result.event.folds[-1].digest == fold["content"]
    assert "model digest" in (result.event.note or "")
    # The prompt held the folded messages, rendered.
    (prompt,) = model.prompts
    assert prompt[0][0] == "system" and "Checking req-0000-1 next." in prompt[1][1]
    assert "tokens freed]" not in prompt[1][1]  # it reads the messages as they were before this clean
    assert memory.count_messages(result.messages) <= 3000
    archived = json.loads(json.dumps(result.event.to_dict(spans=True)))
    assert restore_event(result.messages, archived) == msgs


def test_a_long_summary_is_cut_to_the_digest_bound() -> None:
    msgs = build_transcript(5, 120, chat_share=0.2)
    memory = FreeMemory(counter="approx", budget=3000,
                        fold=FoldPolicy(digest_tokens=120, summarizer=FakeListChatModel(responses=["fact " * 5000])))
    result = memory.clean(msgs)
    record = result.event.folds[-1]
    assert record.digest_tokens <= 120
    assert 0 < record.digest_cap <= 120 and record.digest_tokens <= record.digest_cap  # the fold's own bound
    assert memory.count_messages(result.messages) <= 3000


@pytest.mark.parametrize("model", [_Broken(responses=["x"]), FakeListChatModel(responses=["   "])])
def test_a_failing_or_empty_summarizer_keeps_the_extractive_digest(model: Any) -> None:
    msgs = build_transcript(5, 120, chat_share=0.2)
    plain = FreeMemory(counter="approx", budget=3000).clean(msgs)
    with_model = FreeMemory(counter="approx", budget=3000, fold=FoldPolicy(summarizer=model)).clean(msgs)
    assert with_model.event.folds and with_model.event.error is None
    assert "extractive digest kept" in (with_model.event.note or "")
    # The same fold, the same digest text (handles differ, so compare without the header).
    digest = _fold_message(with_model.messages)["content"].split("\n", 1)[1]
    assert digest == _fold_message(plain.messages)["content"].split("\n", 1)[1]
    assert restore_event(with_model.messages, with_model.event.to_dict(spans=True)) == msgs


def test_async_twin_uses_ainvoke() -> None:
    msgs = build_transcript(6, 120, chat_share=0.2)
    memory = FreeMemory(counter="approx", budget=3000,
                        fold=FoldPolicy(summarizer=FakeListChatModel(responses=[SUMMARY])))
    result = asyncio.run(memory.aclean(msgs))
    assert _fold_message(result.messages)["content"].endswith(SUMMARY)
    broken = FreeMemory(counter="approx", budget=3000, fold=FoldPolicy(summarizer=_Broken(responses=["x"])))
    result = asyncio.run(broken.aclean(msgs))
    assert "summarizer failed (ConnectionError: summariser down)" in (result.event.note or "")


def test_a_summarizer_must_be_a_chat_model() -> None:
    with pytest.raises(ConfigError, match="summarizer"):
        FreeMemory(budget=1000, fold=FoldPolicy(summarizer="gpt-4o"))
