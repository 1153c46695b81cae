"""Shared by the examples: pick an OpenAI-compatible endpoint from flags or the environment, or explain."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

HELP = """No model endpoint configured.

error: no endpoint configured. These examples talk to any OpenAI-compatible server. Pass one:

    python {script} --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B

or set OPENAI_BASE_URL and FREEMEM_MODEL (and OPENAI_API_KEY when the server needs one). Servers that work:
SGLang (`freemem serve --backend sglang ...`), vLLM, llama.cpp (`freemem serve --backend llamacpp ...`),
OpenAI itself (--base-url https://api.openai.com/v1 --model gpt-4o-mini).
"""


def add_endpoint_arguments(p: argparse.ArgumentParser, *, budget: bool = True, timeout: float = 120.0) -> None:
    """``--base-url``, ``--model``, ``--api-key``, ``--temperature``, ``--timeout`` and, with ``budget``,
    ``--budget`` (the token budget of a FreeMemory)."""
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                   help="OpenAI-compatible base URL (env OPENAI_BASE_URL)")
    p.add_argument("--model", default=os.environ.get("FREEMEM_MODEL") or os.environ.get("OPENAI_MODEL"),
                   help="model name on that server (env FREEMEM_MODEL)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                   help="API key (env OPENAI_API_KEY; local servers take any)")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds per model request (default {timeout:g})")
    if budget:
        p.add_argument("--budget", type=int, default=16_000, help="token budget of the context (default 16,000)")


def chat_model(args: argparse.Namespace, script: str) -> Any:
    """A LangChain chat model for the endpoint, or exit 2 with an explanation when none is configured."""
    if not args.base_url or not args.model:
        print(HELP.format(script=script), file=sys.stderr)
        raise SystemExit(2)
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        print("The examples need langchain-openai: pip install 'freemem[examples]'", file=sys.stderr)
        raise SystemExit(2) from None
    return ChatOpenAI(base_url=args.base_url, model=args.model, api_key=args.api_key,
                      temperature=args.temperature, timeout=args.timeout, max_retries=2)
