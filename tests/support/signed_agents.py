"""A real ``create_agent`` tool loop whose scripted model answers with provider-signed blocks
(:mod:`tests.support.provider_blocks`), and the checks of what reaches the model: every kept block of every
request byte-identical to what the model wrote, the latest assistant turn whole, and -- through the providers'
own LangChain integrations, offline -- the payload each provider would receive carrying the signed blocks
unchanged. A module of its own (not a conftest) so tests/langgraph and tests/redis share it."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

_LANGGRAPH_TESTS = str(Path(__file__).resolve().parents[1] / "langgraph")
if _LANGGRAPH_TESTS not in sys.path:  # `lgfakes`, as tests/langgraph import it
    sys.path.insert(0, _LANGGRAPH_TESTS)

from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from lgfakes import TOOLS, ScriptedModel  # noqa: E402

from tests.support import provider_blocks as pb  # noqa: E402

__all__ = ["TOOLS", "check_requests", "script", "scripted"]


def script(provider: pb.Provider, steps: int) -> list[AIMessage]:
    """``steps`` signed tool-calling answers (each reads a bulky log), then a signed final answer."""
    return [pb.assistant_step(provider, k) for k in range(steps)] + [pb.assistant_step(provider, steps, call=False)]


def scripted(provider: pb.Provider, steps: int) -> ScriptedModel:
    return ScriptedModel(responses=script(provider, steps))


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def check_requests(provider: pb.Provider, requests: list[list[BaseMessage]], answers: list[AIMessage]) -> int:
    """Check every request the model received; returns how many signed blocks were compared.

    * each kept block (signed, cited, redacted, tool use) of each assistant message is byte-identical to the
      model's own answer with that id;
    * the latest assistant message of each request is the model's previous answer, whole;
    * the payload the provider's LangChain integration builds from the request carries every signed block of
      the answers it holds exactly as the model wrote it.
    """
    by_id = {a.id: a for a in answers}
    compared = 0
    for i, request in enumerate(requests):
        kept = pb.kept_blocks(request)
        originals = pb.kept_blocks([by_id[m.id] for m in request if isinstance(m, AIMessage) and m.id in by_id])
        assert kept == originals, f"request {i}: a kept block was edited"
        compared += pb.signed_count(request)
        if i:
            latest = next(m for m in reversed(request) if isinstance(m, AIMessage))
            answer = answers[i - 1]
            assert latest.id == answer.id, f"request {i}: the latest assistant turn is not the model's last answer"
            assert _dump(latest.content) == _dump(answer.content)
            assert latest.additional_kwargs == answer.additional_kwargs and latest.tool_calls == answer.tool_calls
        _check_payload(provider, request, answers)
    return compared


# -- the providers' own payloads (offline) ----------------------------------------------------------------------
def _check_payload(provider: pb.Provider, request: list[BaseMessage], answers: list[AIMessage]) -> None:
    present = [a for a in answers if any(m.id == a.id for m in request)]
    if provider == "anthropic":
        from langchain_anthropic import ChatAnthropic

        model = ChatAnthropic(model="claude-sonnet-4-5", api_key="not-used", max_tokens=8000,
                              thinking={"type": "enabled", "budget_tokens": 4000})
        payload = model._get_request_payload(request)
        sent = [_dump(b) for msg in payload["messages"] if isinstance(msg["content"], list)
                for b in msg["content"] if b.get("type") in ("thinking", "redacted_thinking")]
        wrote = [_dump(b) for a in present for b in a.content
                 if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
        assert sent == wrote
        last = [m for m in payload["messages"] if m["role"] == "assistant"]
        if last:
            assert last[-1]["content"][0]["type"] == "thinking"  # what Anthropic requires of a tool loop
    elif provider == "openai":
        from langchain_openai import ChatOpenAI

        model = ChatOpenAI(model="o4-mini", api_key="not-used", use_responses_api=True)
        payload = model._get_request_payload(request)
        sent = [_dump(item) for item in payload["input"] if item.get("type") == "reasoning"]
        wrote = [_dump(b) for a in present for b in a.content if isinstance(b, dict) and b.get("type") == "reasoning"]
        assert sent == wrote
    elif provider in ("gemini", "gemini_v1"):
        from langchain_google_genai import ChatGoogleGenerativeAI

        model = ChatGoogleGenerativeAI(model="gemini-3-pro-preview", api_key="not-used")
        contents = model._prepare_request(request)["contents"]
        sent = [(part.function_call.name if part.function_call else part.text, _b64(part.thought_signature))
                for content in contents for part in content.parts if part.thought_signature]
        wrote = []
        for a in present:
            for b in a.content:
                sig = b.get("signature") or (b.get("extras") or {}).get("signature")
                if sig:
                    wrote.append((b.get("thinking") or b.get("reasoning") or b.get("text"), sig))
            calls = a.additional_kwargs.get(pb.GEMINI_CALL_SIGNATURES_KEY) or {}
            wrote.extend((call["name"], calls[call["id"]]) for call in a.tool_calls if call["id"] in calls)
        assert sent == wrote  # every signed part, in order, with its text or call, as the model wrote it


def _b64(sig: bytes | str) -> str:
    return base64.b64encode(sig).decode() if isinstance(sig, bytes) else sig
