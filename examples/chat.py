#!/usr/bin/env python3
"""A multi-turn chat graph wrapped with ``freemem.langgraph.wrap``: the thread is cleaned between turns.

    python examples/chat.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B

Type messages; an empty line or Ctrl-D ends. The chat is a hand-written one-node ``StateGraph``; ``wrap`` puts
freemem in front of it and keeps the thread (pruned) in the checkpointer, so ``--thread`` resumes it later.
Paste long documents or logs to see freemem trim the older ones once the budget is reached.
"""

from __future__ import annotations

import argparse
import sys

from _endpoint import add_endpoint_arguments, chat_model
from langchain_core.messages import AIMessageChunk
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

from freemem import FreeMemory
from freemem.langgraph import LEDGER_KEY, wrap


def build_chat(model) -> object:
    def respond(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_endpoint_arguments(p)
    p.add_argument("--db", default="freemem-example.sqlite", help="SQLite checkpoint file")
    p.add_argument("--thread", default="chat", help="thread id (resume a conversation)")
    args = p.parse_args()
    model = chat_model(args, "examples/chat.py")
    memory = FreeMemory(budget=args.budget)
    with SqliteSaver.from_conn_string(args.db) as saver:
        chat = wrap(build_chat(model), memory=memory, checkpointer=saver)
        config = {"configurable": {"thread_id": args.thread}}
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            # subgraphs=True: the model's tokens come from the wrapped graph, a subgraph of the outer one
            for _namespace, (chunk, _meta) in chat.stream({"messages": [("user", text)]}, config,
                                                          stream_mode="messages", subgraphs=True):
                if isinstance(chunk, AIMessageChunk) and chunk.content:
                    print(chunk.content, end="", flush=True)
            print()
            state = chat.get_state(config).values
            ledger = state.get(LEDGER_KEY, [])
            print(f"  [freemem: thread {memory.count_messages(state['messages']):,} tokens, "
                  f"{len(ledger)} cleaning rounds so far]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
