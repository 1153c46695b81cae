"""Content blocks in the shapes providers document (and LangChain carries them), for the signed-block tests:
Anthropic ``thinking`` / ``redacted_thinking`` / cited ``text`` / ``tool_use``, OpenAI Responses ``reasoning``
items with ``encrypted_content`` and ``text`` with ``annotations``, Gemini thought signatures (LangChain's v0
``thinking`` + ``signature``, v1 ``extras.signature``, function-call signatures in ``additional_kwargs``), and
LiteLLM's OpenAI-format ``thinking_blocks``.

Each assistant step carries a long thinking text with a repetition loop in it (what the heuristic cleaner cuts
first when it is editable) and calls a tool whose output is bulky, so a clean over budget has every reason to
touch the thinking -- and must not.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from freemem.core.blocks import GEMINI_CALL_SIGNATURES_KEY, block_rule

Provider = Literal["anthropic", "openai", "gemini", "gemini_v1", "langchain_v1"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "openai", "gemini", "gemini_v1", "langchain_v1")


def signature(tag: str, n: int = 240) -> str:
    """An opaque base64 signature (deterministic), as long as real ones tend to be."""
    raw = b"".join(hashlib.sha256(f"{tag}:{i}".encode()).digest() for i in range(n // 32 + 1))
    return base64.b64encode(raw[:n]).decode()


def thinking_text(k: int) -> str:
    """~450 approximate tokens of reasoning with a verbatim loop (five copies of the same paragraph)."""
    loop = (f"Wait, the worker restarts again at step {k}; let me re-read the traceback of job {k} and check "
            f"whether the connection pool is exhausted before retrying the request.\n")
    return (f"Let me think about step {k}. The log shows ConnectionResetError in handlers.py line 212.\n"
            + loop * 5 + f"So the next thing to check is the pool size for svc{k % 5}.")


def tool_output(k: int, lines: int = 90) -> str:
    return "\n".join(f"2024-05-0{k % 9 + 1}T10:{j % 60:02d}:00Z INFO svc{k % 5} worker-{j % 8} handled "
                     f"request req-{k:04d}-{j} in {17 + j % 23} ms status=200" for j in range(lines))


# -- blocks as each provider documents them -------------------------------------------------------------------
def anthropic_thinking(k: int) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking_text(k), "signature": signature(f"anthropic-{k}")}


def anthropic_redacted(k: int) -> dict[str, Any]:
    return {"type": "redacted_thinking", "data": signature(f"redacted-{k}", 480)}


def anthropic_cited_text(k: int) -> dict[str, Any]:
    return {"type": "text", "text": f"According to the runbook, the pool for svc{k % 5} holds 32 connections.",
            "citations": [{"type": "char_location", "cited_text": "The pool holds 32 connections.",
                           "document_index": 0, "document_title": "runbook", "start_char_index": 120,
                           "end_char_index": 150}]}


def openai_reasoning(k: int) -> dict[str, Any]:
    return {"type": "reasoning", "id": f"rs_{k:04d}6820f383d7c08191846711c5df8233bc",
            "summary": [{"type": "summary_text", "text": f"**Checking the pool** {thinking_text(k)}"}],
            "encrypted_content": "gAAAAAB" + signature(f"openai-{k}", 600)}


def openai_cited_text(k: int) -> dict[str, Any]:
    text = f"The pool for svc{k % 5} was raised to 64 in release 2.4 (see the changelog)."
    return {"type": "text", "text": text,
            "annotations": [{"type": "url_citation", "start_index": 0, "end_index": len(text),
                             "url": "https://example.com/changelog", "title": "Changelog"}]}


def gemini_thinking(k: int) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking_text(k), "signature": signature(f"gemini-{k}")}


def gemini_signed_text(k: int) -> dict[str, Any]:
    return {"type": "text", "text": f"I will look at svc{k % 5} next.", "extras": {"signature": signature(f"gt-{k}")}}


def v1_reasoning(k: int, tag: str) -> dict[str, Any]:
    return {"type": "reasoning", "reasoning": thinking_text(k), "extras": {"signature": signature(f"{tag}-{k}")}}


# -- messages ------------------------------------------------------------------------------------------------
def assistant_step(provider: Provider, k: int, *, call: bool = True) -> AIMessage:
    """One assistant step as the provider's LangChain integration returns it: signed thinking, text, and
    (``call``) a tool call."""
    call_id = f"call_{provider}_{k}"
    args = {"service": f"svc{k % 5}"}
    kwargs: dict[str, Any] = {}
    if provider == "anthropic":
        content: list[Any] = [anthropic_thinking(k), anthropic_cited_text(k)]
        if k % 3 == 0:
            content.insert(1, anthropic_redacted(k))
        if call:
            content.append({"type": "tool_use", "id": call_id, "name": "read_log", "input": args})
    elif provider == "openai":
        content = [openai_reasoning(k), openai_cited_text(k)]
    elif provider == "gemini":
        content = [gemini_thinking(k), gemini_signed_text(k)]
        if call:
            kwargs[GEMINI_CALL_SIGNATURES_KEY] = {call_id: signature(f"gemini-call-{k}")}
    elif provider == "gemini_v1":
        content = [v1_reasoning(k, "gemini-v1"), gemini_signed_text(k)]
        if call:
            kwargs[GEMINI_CALL_SIGNATURES_KEY] = {call_id: signature(f"gemini-v1-call-{k}")}
    else:
        content = [v1_reasoning(k, "lc-v1"), {"type": "text", "text": f"Reading the log of svc{k % 5}."}]
    calls = [{"name": "read_log", "args": args, "id": call_id, "type": "tool_call"}] if call else []
    return AIMessage(content=content, tool_calls=calls, additional_kwargs=kwargs, id=f"ai-{provider}-{k}")


def provider_transcript(provider: Provider, steps: int) -> list[BaseMessage]:
    """A system prompt, the task, ``steps`` assistant steps each with its bulky tool result, and a final answer
    (signed as well)."""
    msgs: list[BaseMessage] = [SystemMessage("You are an SRE agent.", id="sys"),
                               HumanMessage("Why does svc3 drop connections?", id="task")]
    for k in range(steps):
        ai = assistant_step(provider, k)
        msgs.append(ai)
        msgs.append(ToolMessage(tool_output(k), tool_call_id=ai.tool_calls[0]["id"], id=f"tool-{provider}-{k}"))
    msgs.append(assistant_step(provider, steps, call=False))
    return msgs


def dict_transcript(steps: int) -> list[dict[str, Any]]:
    """OpenAI-format dicts carrying provider blocks: content lists with signed thinking, redacted thinking,
    Responses reasoning items and cited text; LiteLLM's ``reasoning_content`` + signed ``thinking_blocks``;
    Gemini's signature on an OpenAI-compatible tool call (``extra_content.google.thought_signature``)."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are an SRE agent.", "id": "sys"},
                                  {"role": "user", "content": "Why does svc3 drop connections?", "id": "task"}]
    for k in range(steps):
        call_id = f"call_d{k}"
        msg: dict[str, Any] = {"role": "assistant", "id": f"a{k}"}
        kind = k % 3
        if kind == 0:
            msg["content"] = [anthropic_thinking(k), anthropic_redacted(k), anthropic_cited_text(k)]
        elif kind == 1:
            msg["content"] = [openai_reasoning(k), openai_cited_text(k)]
        else:  # LiteLLM: the thinking text twice, once signed
            block = anthropic_thinking(k)
            msg["content"] = "Reading the log next."
            msg["reasoning_content"] = block["thinking"]
            msg["thinking_blocks"] = [block]
        call: dict[str, Any] = {"id": call_id, "type": "function",
                                "function": {"name": "read_log", "arguments": json.dumps({"service": f"svc{k % 5}"})}}
        if kind == 1:
            call["extra_content"] = {"google": {"thought_signature": signature(f"compat-{k}")}}
        msg["tool_calls"] = [call]
        msgs.append(msg)
        msgs.append({"role": "tool", "tool_call_id": call_id, "id": f"t{k}", "content": tool_output(k)})
    msgs.append({"role": "assistant", "id": "final", "content": [anthropic_thinking(steps),
                                                               {"type": "text", "text": "The pool is too small."}]})
    return msgs


# -- what must not change ------------------------------------------------------------------------------------
def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def kept_blocks(messages: list[Any]) -> dict[tuple[str, str], str]:
    """Every block and field the table keeps, by (message id, where), as exact JSON: content blocks whose row
    says "keep" (signed, cited, redacted, tool use...), LiteLLM ``reasoning_content`` + ``thinking_blocks``,
    Gemini's call signatures and the arguments of the calls they sign."""
    out: dict[tuple[str, str], str] = {}
    for msg in messages:
        if isinstance(msg, dict):
            mid, content, kwargs = str(msg.get("id")), msg.get("content"), {}
            if msg.get("thinking_blocks"):
                out[(mid, "thinking_blocks")] = _dump(msg["thinking_blocks"])
                out[(mid, "reasoning_content")] = _dump(msg.get("reasoning_content"))
            for k, call in enumerate(msg.get("tool_calls") or []):
                if "extra_content" in call:
                    out[(mid, f"tool_calls[{k}]")] = _dump(call)
        else:
            mid, content, kwargs = str(msg.id), msg.content, msg.additional_kwargs or {}
            sigs = kwargs.get(GEMINI_CALL_SIGNATURES_KEY)
            if sigs:
                out[(mid, GEMINI_CALL_SIGNATURES_KEY)] = _dump(sigs)
                for call in msg.tool_calls:
                    if call["id"] in sigs:
                        out[(mid, f"call {call['id']}")] = _dump(call["args"])
        if isinstance(content, list):
            for i, block in enumerate(content):
                if isinstance(block, dict) and block_rule(block).fate == "keep":
                    out[(mid, f"content[{i}]")] = _dump(block)
    return out


def signed_count(messages: list[Any]) -> int:
    """How many of :func:`kept_blocks`' entries are signed or encrypted (what a provider checks)."""
    return sum(1 for v in kept_blocks(messages).values()
               if "signature" in v or "encrypted_content" in v or "redacted_thinking" in v)
