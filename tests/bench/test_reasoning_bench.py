"""freemem bench reasoning: chunking, loop detection, the span map and the figures, on generated traces."""

from __future__ import annotations

import json
from pathlib import Path

from freemem.config import Triggers
from freemem.memory import FreeMemory
from freemem_bench import reasoning as R
from freemem_bench._common import bench_counter


def _reasoning(steps: int = 120) -> str:
    return "".join(f"Step {i}: we compute term_{i} = {i * i} and compare it with bound {i + 7}.\n" for i in range(steps))


def _looping_trace() -> str:
    loop = "Wait, let me recheck the sum of the digits once more carefully.\n" * 400
    return _reasoning() + loop


def test_chunk_bounds_cover_the_text_in_order() -> None:
    text = _reasoning(300)
    bounds = R.chunk_bounds(text, total_tokens=len(text) // 4, chunk_tokens=500)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert len(bounds) > 3
    assert all(text[b - 1] == "\n" for _a, b in bounds[:-1])


def test_tail_loop_finds_the_redundant_copies() -> None:
    text = _looping_trace()
    loop = R.tail_loop(text)
    assert loop is not None
    start, end, unit = loop
    copy = "Wait, let me recheck the sum of the digits once more carefully.\n"
    assert start == len(_reasoning())
    assert end == len(text) - len(copy)  # every copy but the last
    assert unit == len(copy)
    assert R.tail_loop(_reasoning()) is None
    one_line = _reasoning() + "so x = 3 and " * 300
    assert R.tail_loop(one_line) is not None


def test_stream_clean_maps_every_kept_character_and_frees_the_loop() -> None:
    text = _looping_trace() + "\nFinal answer: \\boxed{42}\n"
    counter = bench_counter("approx")
    memory = FreeMemory(counter=counter, triggers=Triggers(every_tokens=500))
    streamed = R.stream_clean(text, "What is the sum?", memory, chunk_tokens=500)
    assert streamed.cleans >= 1
    assert streamed.tokens_after < streamed.tokens_before / 2
    # the map is exact: the kept characters, in order, are the final text minus its markers
    kept_text = "".join(ch for ch, k in zip(text, streamed.kept) if k)
    assert kept_text == streamed.final_text.replace("<Del>", "")
    trace = R.Trace("t", "generated", "What is the sum?", text)
    figures = R.trace_figures(trace, streamed, counter)
    assert figures["answer_kept"] is True
    assert figures["answer_line"] == "Final answer: \\boxed{42}"
    assert figures["loop"] is not None
    assert figures["loop"]["tokens_freed"] / figures["loop"]["tokens"] >= 0.8
    summary = R.summarize_traces([figures])
    assert summary["loop_traces"] == 1 and summary["answer_lines_kept"] == 1


def test_loaders_read_skythought_and_anchor_records(tmp_path: Path) -> None:
    sky = tmp_path / "skythought_longcot" / "raw"
    sky.mkdir(parents=True)
    (sky / "run.jsonl").write_text("\n".join(json.dumps({"idx": i, "question": "q?", "code": [_reasoning(5)]})
                                             for i in range(3)) + "\n")
    (tmp_path / "skythought_longcot" / "index.csv").write_text(
        "file,idx,tail_loop_unit_chars\nrun.jsonl,0,0\nrun.jsonl,1,55\n")
    traces = R.load_traces(tmp_path)
    assert [t.label for t in traces] == ["run#0", "run#1", "run#2"]
    assert [t.index_tail_loop for t in traces] == [0, 55, None]
    text = "First I set up. Then I compute 2+2=4. So the answer is 4."
    chunks = [{"chunk": "First I set up.", "counterfactual_importance_accuracy": 0.1},
              {"chunk": "Then I compute 2+2=4.", "counterfactual_importance_accuracy": -0.9},
              {"chunk": "not in the text", "counterfactual_importance_accuracy": 0.5},
              {"chunk": "So the answer is 4.", "counterfactual_importance_accuracy": 0.0}]
    anchors = tmp_path / "thought_anchors_r1_chunked_cot"
    anchors.mkdir()
    (anchors / "cases.jsonl").write_text(json.dumps({"model": "m", "condition": "c", "case": "p1", "base_solution": {
        "prompt": "Add.", "solution": text}, "chunks_labeled": chunks}) + "\n")
    (case,) = R.load_anchor_cases(tmp_path)
    assert case.chunks_total == 4
    assert [(text[s:e], imp) for s, e, imp in case.chunks] == [
        ("First I set up.", 0.1), ("Then I compute 2+2=4.", 0.9), ("So the answer is 4.", 0.0)]
    # nothing cleaned: everything kept; the top chunk by |importance| is the high one
    streamed = R.Streamed(text, bytearray([1]) * len(text), 20, 20, 20, 0, 0.0)
    figs = R.anchor_figures(case, streamed, top_share=0.3)
    assert (figs["high_chunks"], figs["high_kept"], figs["chunks_kept"], figs["freed"]) == (1, 1, 3, 0.0)
    lost = bytearray(streamed.kept)
    lost[text.index("Then"):text.index("Then") + 4] = b"\x00" * 4
    figs = R.anchor_figures(case, R.Streamed(text, lost, 20, 15, 20, 1, 0.0), top_share=0.3)
    assert (figs["high_kept"], figs["chunks_kept"]) == (0, 2)
