"""The README's first example, runnable: a ``create_agent`` agent whose context freemem keeps under 16,000 tokens.

    pip install -e '.[examples]'
    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 FREEMEM_MODEL=NAME python examples/quickstart.py "What is in README.md?"

Any OpenAI-compatible server works (llama.cpp, SGLang, vLLM, OpenAI itself). The lines between the markers are
the README's "Use it" block, word for word (tests/test_examples.py checks both).
"""

# --- README: use it ---
import os
import sys
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.sqlite import SqliteSaver

from freemem import FreeMemory, SqliteArchive
from freemem.langgraph import FreeMemoryMiddleware


@tool
def read_file(path: str) -> str:
    """Read a text file."""
    return Path(path).read_text(encoding="utf-8", errors="replace")


model = ChatOpenAI(base_url=os.environ["OPENAI_BASE_URL"], model=os.environ["FREEMEM_MODEL"],
                   api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
memory = FreeMemory(budget=16_000, archive=SqliteArchive("threads.sqlite"))  # freed text stays recallable
with SqliteSaver.from_conn_string("threads.sqlite") as saver:                   # the pruned thread persists
    agent = create_agent(model, [read_file], checkpointer=saver,
                         middleware=[FreeMemoryMiddleware(memory, recall=True)])
    config = {"configurable": {"thread_id": "readme-1"}}
    question = " ".join(sys.argv[1:]) or "What is in README.md?"
    result = agent.invoke({"messages": [{"role": "user", "content": question}]}, config)
    print(result["messages"][-1].content)
# --- end ---
