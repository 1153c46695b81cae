"""HeuristicCleaner on generated transcripts and traces: loops, duplicates, superseded and stale output, budget."""

from __future__ import annotations

from freemem import Context, FreeMemory, HeuristicCleaner, apply_commands, get_counter, pairing_violations
from freemem.core.loops import has_loop


def looping_trace(copies: int = 40) -> tuple[str, str]:
    question = "How many positive divisors does 360 have?"
    body = "".join(f"Step {i}: consider the factor {i} and whether it divides 360.\n\n" for i in range(30))
    unit = "Wait, but in this game, since 360 = 2^3 * 3^2 * 5, the count is (3+1)(2+1)(1+1).\n\n"
    return question, question + "\n" + body + "So \\boxed{24} is the answer.\n\n" + unit * copies


def test_verbatim_loop_is_freed_and_answer_kept():
    question, text = looping_trace()
    ctx = Context.from_text(text, question=question)
    proposal = HeuristicCleaner().propose(ctx)
    out = apply_commands(ctx, proposal.commands, max_freed_share=1.0)
    assert not out.rejected and out.applied
    loop_chars = len(text) - text.index("Wait, but")
    freed = sum(len(s.original) - len(s.marker) for s in out.applied)
    assert freed >= 0.8 * (loop_chars - 2000)  # the recency window (2,000 chars) stays
    assert "\\boxed{24}" in out.text and out.text.startswith(question)
    assert text.endswith(out.text[-500:])


def test_multi_paragraph_period_loop():
    block = "Let me recompute.\n\nThe sum is 12.\n\nBut that contradicts the earlier bound.\n\n"
    text = "Intro line that is unique.\n\n" + block * 300
    out = apply_commands(Context.from_text(text), HeuristicCleaner().propose(Context.from_text(text)).commands,
                         max_freed_share=1.0)
    assert len(out.text) < 0.35 * len(text)


def test_inline_character_loop():
    text = "Start. " + "1, 2, 1, 2, " * 200 + "\nthe end of the unique part\n" + "tail words " * 250
    ctx = Context.from_text(text)
    out = apply_commands(ctx, HeuristicCleaner().propose(ctx).commands, max_freed_share=1.0)
    assert len(out.text) < len(text) - 1500


def test_no_loop_no_commands():
    text = "".join(f"Line {i} says something different about item {i * 7}.\n" for i in range(200))
    assert HeuristicCleaner().propose(Context.from_text(text)).commands == []
    assert not has_loop(text)
    assert has_loop(looping_trace()[1])


def tool_session(n_calls: int = 12, listing_lines: int = 300):
    msgs = [{"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "The test test_parse_config fails; fix src/config/parser.py."}]
    for i in range(n_calls):
        args = '{"cmd": "ls -R src"}' if i % 4 == 0 else f'{{"cmd": "cat src/module_{i}.py"}}'
        content = (f"Looking at step {i}; mentioning src/config/parser.py" if i == n_calls - 2 else f"Step {i} now.")
        msgs.append({"role": "assistant", "content": content, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "bash", "arguments": args}}]})
        if i % 4 == 0:
            out = "".join(f"src/pkg_{j}/file_{j}.py\n" for j in range(listing_lines)) + "src/config/parser.py\n"
        else:
            out = "".join(f"def function_{i}_{j}(x):\n    return x * {j}\n" for j in range(listing_lines // 3))
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": out})
    return msgs


def test_superseded_result_goes_and_referenced_lines_stay():
    msgs = tool_session()
    ctx = Context.from_messages(msgs)
    out = apply_commands(ctx, HeuristicCleaner(bulky_tokens=10**9).propose(ctx).commands, max_freed_share=1.0)
    pruned = out.messages
    assert pairing_violations(pruned) == []
    # `ls -R src` ran at calls 0, 4, 8: the two older results are superseded
    assert pruned[3]["content"].startswith("[freemem:") and pruned[11]["content"].startswith("[freemem:")
    assert pruned[19]["content"] == msgs[19]["content"]  # the latest identical call keeps its result


def test_budget_is_met_when_protected_part_fits():
    counter = get_counter("approx")
    msgs = tool_session(n_calls=16)
    memory = FreeMemory(budget=4000, counter=counter)
    before = memory.count_messages(msgs)
    assert before > 20000
    result = memory.clean(msgs)
    assert result.event.tokens_after <= 4000, result.event
    assert pairing_violations(result.messages) == []
    # an identifier the agent used later survives as an excerpt line of the first listing
    assert "src/config/parser.py" in result.messages[27]["content"]
    assert result.messages[-1] == msgs[-1] and result.messages[-2] == msgs[-2]  # most recent turn untouched


def test_commands_are_deterministic():
    msgs = tool_session()
    ctx = Context.from_messages(msgs)
    a = HeuristicCleaner(budget=3000).propose(ctx).commands
    b = HeuristicCleaner(budget=3000).propose(Context.from_messages(msgs)).commands
    assert a == b and a
