"""PromptedCleaner with LangChain's fake chat models, and the prompt templates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage

from freemem.cleaners.prompted import PromptedCleaner
from freemem.core.commands import Command
from freemem.core.context import Context
from freemem.core.errors import CleanerError, CleanerTimeout, ConfigError
from freemem.prompts import PromptTemplate, builtin_templates, load_template


def test_prompted_cleaner_parses_commands_and_usage() -> None:
    answer = AIMessage(content='Here you go:\n```json\n{"commands": [{"prefix": "Try x = 2 again:", '
                               '"suffix": "= 5? No."}]}\n```',
                       usage_metadata={"input_tokens": 120, "output_tokens": 30, "total_tokens": 150})
    model = GenericFakeChatModel(messages=iter([answer]))
    ctx = Context.from_text("Try x = 2: 2 + 2 = 5? No. Try x = 2 again: 2 + 2 = 5? No. So x = 3.")
    p = PromptedCleaner(model).propose(ctx)
    assert p.commands == [Command(prefix="Try x = 2 again:", suffix="= 5? No.")]
    assert p.usage == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert p.note is None and p.cleaner == "prompted" and p.extra["template"] == "prompted_v3"


def test_prompted_cleaner_sends_the_template() -> None:
    seen: list[Any] = []

    class Recorder(FakeListChatModel):
        def _call(self, messages, *args, **kwargs):  # type: ignore[override]
            seen.append(messages)
            return super()._call(messages, *args, **kwargs)

    PromptedCleaner(Recorder(responses=["[]"])).propose("THE CONTEXT {x}")
    system, *examples, human = seen[0]  # the worked examples go as earlier turns
    assert system.type == "system" and human.type == "human" and examples
    assert "THE CONTEXT {x}" in human.content and "<context>" in human.content


def test_prompted_garbage_gives_note() -> None:
    p = PromptedCleaner(FakeListChatModel(responses=["Nothing to delete, all good."])).propose("ctx")
    assert p.commands == [] and p.note and p.raw == "Nothing to delete, all good."


def test_prompted_content_blocks() -> None:
    answer = AIMessage(content=[{"type": "text", "text": '[{"prefix": "a",'},
                                {"type": "text", "text": ' "suffix": "b"}]'}])
    p = PromptedCleaner(GenericFakeChatModel(messages=iter([answer]))).propose("ctx")
    assert p.commands == [Command(prefix="a", suffix="b")]


class Broken(FakeListChatModel):
    def _call(self, *args, **kwargs):  # type: ignore[override]
        raise RuntimeError("model exploded")


def test_prompted_model_failure_is_cleaner_error() -> None:
    with pytest.raises(CleanerError, match="model exploded"):
        PromptedCleaner(Broken(responses=["x"])).propose("ctx")


async def test_prompted_async_and_timeout() -> None:
    p = await PromptedCleaner(FakeListChatModel(responses=['{"commands": []}'])).apropose("ctx")
    assert p.commands == [] and p.note is None

    class Slow(FakeListChatModel):
        async def _agenerate(self, *args, **kwargs):  # type: ignore[override]
            await asyncio.sleep(2)
            return await super()._agenerate(*args, **kwargs)

    with pytest.raises(CleanerTimeout):
        await PromptedCleaner(Slow(responses=["[]"]), timeout=0.1).apropose("ctx")


def test_prompted_rejects_non_models() -> None:
    with pytest.raises(ConfigError):
        PromptedCleaner(object())  # type: ignore[arg-type]


# -- templates ------------------------------------------------------------------------------------------


def test_builtin_templates_load_and_round_trip() -> None:
    assert {"free_module_v1", "prompted_v1", "free_module_v2", "prompted_v2", "free_module_v3", "prompted_v3"} <= set(builtin_templates())
    for name in builtin_templates():
        t = load_template(name)
        assert t.version == name and t.system and PromptTemplate.PLACEHOLDER in t.user
        assert PromptTemplate.loads(t.dumps()) == t


def test_render_inserts_context_only_once_and_literally() -> None:
    t = PromptTemplate(version="v", system="sys", user="<c>\n{context}\n</c>")
    msgs = t.render("a {context} b {0}")
    assert msgs == [{"role": "system", "content": "sys"}, {"role": "user", "content": "<c>\na {context} b {0}\n</c>"}]
    assert t.render_prompt("X") == "sys\n\n<c>\nX\n</c>"


def test_user_template_files(tmp_path: Path) -> None:
    txt = tmp_path / "mine_v3.txt"
    txt.write_text("# my adapter's format\n=== user ===\nClean this:\n{context}\nJSON:\n", encoding="utf-8")
    t = load_template(txt)
    assert t.version == "mine_v3" and t.system is None and t.user == "Clean this:\n{context}\nJSON:"
    js = tmp_path / "t.json"
    js.write_text(json.dumps({"version": "j1", "system": "s", "user": "u {context}"}), encoding="utf-8")
    assert load_template(str(js)) == PromptTemplate(version="j1", system="s", user="u {context}")


@pytest.mark.parametrize("text", ["no sections {context}", "version: v\n=== system ===\n{context}\n",
                                  "weird header\n=== user ===\n{context}", "=== user ===\nno placeholder"])
def test_bad_templates(text: str) -> None:
    with pytest.raises(ConfigError):
        PromptTemplate.loads(text, default_version="x")


def test_unknown_builtin() -> None:
    with pytest.raises(ConfigError, match="unknown prompt template"):
        load_template("nope_v9")
