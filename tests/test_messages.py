"""freemem.messages: a model's answer and a transcript message, read the same way everywhere."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from freemem.messages import answer_text, hit_length_limit, json_message, message_text, model_usage, newest_text


def test_answer_text_with_and_without_reasoning() -> None:
    blocks = AIMessage(content=[{"type": "reasoning", "reasoning": "think"}, {"type": "text", "text": '{"com'},
                                {"type": "text", "text": 'mands": []}'}],
                       additional_kwargs={"reasoning_content": "split out"})
    assert answer_text(blocks) == 'split out\nthink\n{"com\nmands": []}'  # summaries read everything
    assert answer_text(blocks, reasoning=False) == '{"commands": []}'  # a cleaner's JSON stays whole
    assert answer_text(AIMessage(content="plain")) == answer_text(AIMessage(content="plain"), reasoning=False)
    assert answer_text("a bare string") == "a bare string"


def test_usage_and_length_limit() -> None:
    reply = AIMessage(content="x", usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                      response_metadata={"finish_reason": "length"})
    assert model_usage(reply) == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert model_usage(AIMessage(content="x")) == {}
    assert hit_length_limit(reply) and not hit_length_limit(AIMessage(content="x"))


def test_transcript_messages() -> None:
    call = AIMessage(content="reading", id="a1", tool_calls=[{"id": "c1", "name": "read", "args": {"p": 1}}])
    msgs = [HumanMessage("task", id="u1"), call, ToolMessage("file text", tool_call_id="c1", id="t1")]
    assert newest_text(msgs) == "reading" and newest_text([]) == ""
    assert message_text(msgs[2]) == "file text"
    plain = json_message(call)
    assert plain["role"] == "assistant" and plain["id"] == "a1"
    assert plain["tool_calls"][0]["function"]["name"] == "read"
    as_dict = {"role": "user", "content": "hi"}
    assert json_message(as_dict) == as_dict and json_message(as_dict) is not as_dict
