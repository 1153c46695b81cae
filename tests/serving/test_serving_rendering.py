"""FreeModuleCleaner shows the model the rendered context (protected parts tagged) and says so."""

from __future__ import annotations

import json

from freemem import Context
from freemem.cleaners.free_module import FreeModuleCleaner
from tests.serving.stub_openai import StubReply
from tests.test_rendering import transcript


def test_free_module_cleaner_sends_the_rendering(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(json.dumps({"commands": [{"prefix": "Writing it again", "suffix": "a note."}]}))
    ctx = Context.from_messages(transcript())
    cleaner = FreeModuleCleaner(stub.base_url, model="m", adapter=None)
    assert cleaner.repeated == "all" and cleaner.template.version == "free_module_v3"
    p = cleaner.propose(ctx)
    sent = stub.requests[0]["json"]["messages"][-1]["content"]
    assert p.shown is not None and p.shown.text in sent and "<protected>" in sent and ctx.text not in sent
    assert p.extra["render"] == "mark"
    raw = FreeModuleCleaner(stub.base_url, model="m", adapter=None, template="free_module_v1").propose(ctx)
    assert raw.shown is None and ctx.text in stub.requests[1]["json"]["messages"][-1]["content"]
