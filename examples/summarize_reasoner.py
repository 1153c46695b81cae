"""InftyThink-style sawtooth reasoning with freemem's ``summarize`` policy, against any OpenAI-compatible server.

    python examples/summarize_reasoner.py --base-url http://localhost:30000/v1 --model Qwen/Qwen3-8B \\
        --question "How many positive divisors does 2024 have?" --segment-tokens 4096

Each round the model reasons for at most ``--segment-tokens`` tokens and ends with a <summary>; the next round
sees only the question and that summary. Uses ``langchain-openai`` when it is installed, else the ``openai``
client through a small LangChain adapter. ``--base-url``/``--model`` default to $OPENAI_BASE_URL/$FREEMEM_MODEL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from freemem.policies.summarize import InftyThinker


def chat_model(base_url: str, model: str, api_key: str, timeout: float) -> Any:
    """A LangChain chat model for an OpenAI-compatible endpoint."""
    try:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(base_url=base_url, model=model, api_key=api_key, timeout=timeout)
    except ImportError:
        pass
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from openai import AsyncOpenAI, OpenAI

    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}

    class OpenAIChat(BaseChatModel):
        """The ``openai`` client as a LangChain chat model (text in, text out; reasoning kept)."""

        def _request(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
            body = {"model": model, "messages": [{"role": roles.get(m.type, m.type), "content": m.content}
                                                 for m in messages]}
            if kwargs.get("max_tokens"):
                body["max_tokens"] = kwargs["max_tokens"]
            return body

        @staticmethod
        def _result(response: Any) -> ChatResult:
            choice = response.choices[0]
            extra = {}
            reasoning = getattr(choice.message, "reasoning_content", None)
            if reasoning:
                extra["reasoning_content"] = reasoning
            usage = response.usage
            message = AIMessage(content=choice.message.content or "", additional_kwargs=extra,
                                response_metadata={"finish_reason": choice.finish_reason},
                                usage_metadata={"input_tokens": usage.prompt_tokens,
                                                "output_tokens": usage.completion_tokens,
                                                "total_tokens": usage.total_tokens} if usage else None)
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout)
            return self._result(client.chat.completions.create(**self._request(messages, kwargs)))

        async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                             **kwargs: Any) -> ChatResult:
            client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout)
            return self._result(await client.chat.completions.create(**self._request(messages, kwargs)))

        @property
        def _llm_type(self) -> str:
            return "openai-compatible"

    return OpenAIChat()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"), help="OpenAI-compatible /v1 URL")
    p.add_argument("--model", default=os.environ.get("FREEMEM_MODEL"), help="model name on that server")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    p.add_argument("--question", default="How many positive divisors does 2024 have? Put the answer in \\boxed{}.")
    p.add_argument("--segment-tokens", type=int, default=4096)
    p.add_argument("--summary-tokens", type=int, default=1024)
    p.add_argument("--max-rounds", type=int, default=8)
    p.add_argument("--counter", default="auto", help="token counter: qwen3, o200k_base, approx, auto")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    if not args.base_url or not args.model:
        print("error: no endpoint configured. Pass --base-url and --model (or set OPENAI_BASE_URL and "
              "FREEMEM_MODEL), e.g. --base-url http://localhost:30000/v1 --model Qwen/Qwen3-8B", file=sys.stderr)
        return 2
    thinker = InftyThinker(chat_model(args.base_url, args.model, args.api_key, args.timeout),
                           segment_tokens=args.segment_tokens, summary_tokens=args.summary_tokens,
                           max_rounds=args.max_rounds, counter=args.counter)
    try:
        result = thinker.invoke(args.question)
    except Exception as exc:  # noqa: BLE001 - an example: say what failed, plainly
        print(f"error: the model call failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for i, summary in enumerate(result.summaries, 1):
        print(f"--- summary after round {i} ---\n{summary}\n")
    print(f"answer: {result.answer}  (status: {result.status}, rounds: {result.rounds})")
    print(json.dumps({"calls": len(result.calls), "peak_context": result.peak_context,
                      "bound": thinker.context_bound(args.question), "total_tokens": result.total_tokens}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
