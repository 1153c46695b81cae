"""`freemem clean`: formats kept, reports, clear errors."""

from __future__ import annotations

import json

from freemem.cli.main import main
from freemem.core.pairing import pairing_violations


def transcript(n=6):
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}", "content": "".join(f"f{j}.py\n" for j in range(400))})
    return msgs


def test_jsonl_records_keep_fields(tmp_path, capsys):
    src = tmp_path / "runs.jsonl"
    src.write_text("\n".join(json.dumps({"instance_id": f"r{k}", "resolved": True, "messages": transcript()})
                             for k in range(3)) + "\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    assert main(["clean", str(src), "--budget", "3000", "--counter", "approx", "--out", str(out),
                 "--json", str(report), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instance_id"] for r in rows] == ["r0", "r1", "r2"] and all(r["resolved"] for r in rows)
    data = json.loads(report.read_text())
    assert data["items"] == 3 and data["pairing_violations"] == 0 and data["over_budget"] == 0
    assert data["tokens_after"] < data["tokens_before"]
    for r in rows:
        assert pairing_violations(r["messages"]) == []


def test_json_list_and_plain_text_and_traces(tmp_path):
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(transcript()))
    assert main(["clean", str(conv), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    pruned = json.loads((tmp_path / "conv.freemem.json").read_text())
    assert isinstance(pruned, list) and len(pruned) == len(transcript())

    trace = "Q: 2+2?\n" + "".join(f"line {i}\n" for i in range(100)) + "So \\boxed{4}.\n" + "Wait, again.\n\n" * 400
    txt = tmp_path / "trace.txt"
    txt.write_text(trace)
    assert main(["clean", str(txt), "--counter", "approx", "-q", "--marker", "<gone>"]) == 0
    out = (tmp_path / "trace.freemem.txt").read_text()
    assert "<gone>" in out and "\\boxed{4}" in out and len(out) < len(trace) / 2

    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"idx": 0, "question": "Q: 2+2?", "code": [trace]}) + "\n"
                      + json.dumps({"idx": 1, "question": "x", "code": ["short"]}) + "\n")
    report = tmp_path / "r.json"
    assert main(["clean", str(traces), "--counter", "approx", "-q", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["format"] == "traces-jsonl" and data["answers_lost"] == 0 and data["items"] == 2
    rows = [json.loads(x) for x in (tmp_path / "traces.freemem.jsonl").read_text().splitlines()]
    assert rows[1]["code"] == ["short"] and len(rows[0]["code"][0]) < len(trace)


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [')
    assert main(["clean", str(bad), "-q"]) == 1
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "Traceback" not in err
    assert main(["clean", str(tmp_path / "missing.jsonl"), "-q"]) == 1
    weird = tmp_path / "weird.jsonl"
    weird.write_text("[1, 2]\n[3]\n")
    assert main(["clean", str(weird), "-q"]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["clean", str(bad), "--budget", "0", "--format", "text", "-q"]) == 1
