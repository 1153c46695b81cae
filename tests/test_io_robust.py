"""Hostile and malformed input files (issue 12, items 2, 4, 9, 13): nothing lost, one clear line, faithful output.

Write failures are real, not mocked: a child process runs under ``RLIMIT_FSIZE`` (``SIGXFSZ`` ignored), so its
writes past the limit fail with ``EFBIG`` exactly as on a full disk.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from freemem.cli.main import main
from freemem.core.errors import FormatError, StoreError
from freemem.io import atomic_path, read_document, render_document, write_files, write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def transcript(n: int = 8, extra: str = "") -> list[dict]:
    msgs = [{"role": "system", "content": "You are a careful agent. " * 20},
            {"role": "user", "content": "Fix the failing test, please. " * 10}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}",
                     "content": "".join(f"src/f{j}.py{extra}\n" for j in range(300))})
    msgs.append({"role": "assistant", "content": "Done: the test passes now."})
    return msgs


def run_limited(args: list[str], limit_bytes: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` with writes limited to ``limit_bytes`` per file."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, preexec_fn=limit, capture_output=True,
                          text=True, timeout=300)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("freemem: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -- item 2: atomic writes, nothing written when a later step fails ----------------------------------------


def test_out_equal_to_input_survives_a_failing_write(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text("\n".join(json.dumps({"instance_id": f"r{k}", "messages": transcript()}) for k in range(4)) + "\n")
    before = src.read_bytes()
    assert len(before) > 100_000
    proc = run_limited(["-m", "freemem.cli.main", "clean", str(src), "--out", str(src), "--budget", "2000",
                        "--counter", "approx", "-q"], 4096, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "cannot write" in proc.stderr and "nothing was written" in proc.stderr
    assert src.read_bytes() == before  # the input is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]  # no temporary file left behind


def test_bench_write_json_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    out.write_text('{"previous": "run"}\n')
    code = ("from freemem_bench._common import write_json; "
            f"write_json({str(out)!r}, {{'rows': ['x' * 100] * 2000}})")
    proc = run_limited(["-c", code], 16_000, tmp_path)
    assert proc.returncode != 0 and "StoreError" in proc.stderr
    assert out.read_text() == '{"previous": "run"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_lone_surrogate_written_back_over_the_input(tmp_path: Path) -> None:
    msgs = transcript()
    msgs[1]["content"] += " The file is \udcff-broken.txt."  # os.fsdecode of a non-UTF-8 name; protected
    src = tmp_path / "x.json"
    src.write_text(json.dumps(msgs))  # ensure_ascii: the file holds the escape "\ud800"
    assert main(["clean", str(src), "--out", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    back = json.loads(src.read_text(encoding="utf-8"))
    assert len(back) == len(msgs) and back[0] == msgs[0] and back[1] == msgs[1]
    # The second read of freemem's own output works too, and the surrogate is still the same character.
    doc = read_document(src)
    assert doc.format == "messages-json"
    assert doc.items[0].value[1]["content"].endswith("\udcff-broken.txt.")


def test_json_report_failure_writes_no_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "x.json"
    src.write_text(json.dumps(transcript()))
    out = tmp_path / "pruned.json"
    code = main(["clean", str(src), "--out", str(out), "--json", str(tmp_path / "missing" / "r.json"),
                 "--counter", "approx", "-q"])
    assert code == 1
    err = one_line_error(capsys)
    assert "--json report" in err and "does not exist" in err
    assert not out.exists()


def test_out_into_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "x.json"
    src.write_text(json.dumps(transcript()))
    assert main(["clean", str(src), "--out", str(tmp_path / "nope" / "o.json"), "-q", "--counter", "approx"]) == 1
    assert "does not exist" in one_line_error(capsys)


def test_write_files_stages_all_before_replacing(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    first.write_text("old a")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="nothing was written"):
        write_files([(first, b"new a"), (blocker / "b.txt", b"new b")])
    assert first.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "file"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "chart.png"
    target.write_bytes(b"old chart")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        assert temp.suffix == ".png" and temp.parent == tmp_path
        temp.write_bytes(b"half a ch")
        raise RuntimeError("matplotlib failed")
    assert target.read_bytes() == b"old chart"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]
    with atomic_path(target) as temp:
        temp.write_bytes(b"new chart")
    assert target.read_bytes() == b"new chart"


def test_atomic_write_keeps_mode_and_follows_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text_atomic(link, '{"a": 1}')
    assert link.is_symlink() and real.read_text() == '{"a": 1}'
    assert real.stat().st_mode & 0o777 == 0o640


# -- item 4: a message without a role ----------------------------------------------------------------------


def test_message_without_role_is_an_error_not_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msgs = transcript()
    del msgs[0]["role"]  # the system prompt
    src = tmp_path / "conv.json"
    src.write_text(json.dumps(msgs))
    assert main(["clean", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 1
    err = one_line_error(capsys)
    assert "message 0" in err and "'role'" in err
    assert not (tmp_path / "conv.freemem.json").exists()


def test_jsonl_message_without_role_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msgs = transcript()
    del msgs[0]["role"]
    src = tmp_path / "conv.jsonl"
    src.write_text("".join(json.dumps(m) + "\n" for m in msgs))
    with pytest.raises(FormatError, match=r"line 1: .*'role'"):
        read_document(src)
    msgs = transcript()
    del msgs[3]["role"]
    src.write_text("".join(json.dumps(m) + "\n" for m in msgs))
    assert main(["clean", str(src), "--counter", "approx", "-q"]) == 1
    assert "line 4" in one_line_error(capsys)


def test_record_message_list_with_a_roleless_message(tmp_path: Path) -> None:
    msgs = transcript()
    del msgs[2]["role"]
    src = tmp_path / "runs.jsonl"
    src.write_text("".join(json.dumps({"instance_id": f"r{k}", "text": "notes", "messages": msgs}) + "\n"
                           for k in range(2)))
    with pytest.raises(FormatError, match=r"line 1 \(.messages.\), message 2 has no .role."):
        read_document(src)


# -- item 9: newline-faithful, U+2028, round trip -----------------------------------------------------------


def test_crlf_text_keeps_its_line_endings(tmp_path: Path) -> None:
    body = "Q: 2+2?\r\n" + "".join(f"line {i}\r\n" for i in range(100)) + "So \\boxed{4}.\r\n"
    body += "Wait, again.\r\n\r\n" * 400
    src = tmp_path / "trace.txt"
    src.write_bytes(body.encode())
    assert main(["clean", str(src), "--counter", "approx", "-q"]) == 0
    out = (tmp_path / "trace.freemem.txt").read_bytes()
    assert b"So \\boxed{4}.\r\n" in out and len(out) < len(body) / 2
    assert out.count(b"\n") == out.count(b"\r\n")


def test_crlf_jsonl_keeps_line_endings_and_unchanged_lines(tmp_path: Path) -> None:
    small = json.dumps({"instance_id": "small", "messages": transcript(0)}, ensure_ascii=True, indent=None)
    big = json.dumps({"instance_id": "big", "messages": transcript(10)})
    src = tmp_path / "runs.jsonl"
    src.write_bytes((small + "\r\n" + big + "\r\n").encode())
    assert main(["clean", str(src), "--budget", "2000", "--counter", "approx", "-q"]) == 0
    out = (tmp_path / "runs.freemem.jsonl").read_bytes()
    lines = out.split(b"\r\n")
    assert lines[0] == small.encode() and lines[-1] == b"" and len(lines) == 3
    assert len(lines[1]) < len(big) and b"\n" not in lines[1]


def test_u2028_in_jsonl_reads_and_round_trips(tmp_path: Path) -> None:
    msgs = transcript(extra="\u2028\u2029\x85")
    src = tmp_path / "runs.jsonl"
    src.write_text("".join(json.dumps({"id": k, "messages": msgs}, ensure_ascii=False) + "\n" for k in range(2)),
                   encoding="utf-8")
    doc = read_document(src)
    assert doc.format == "messages-jsonl" and len(doc.items) == 2
    assert main(["clean", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    out = tmp_path / "runs.freemem.jsonl"
    assert "\u2028" in out.read_text(encoding="utf-8")  # written raw
    again = read_document(out)  # freemem reads its own output
    assert len(again.items) == 2 and again.items[0].value[0] == msgs[0]
    assert main(["clean", str(out), "--out", str(tmp_path / "twice.jsonl"), "--counter", "approx", "-q"]) == 0


# -- item 13: one-line errors, BOM, compact JSON -------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("tool_calls.json", '[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, '
                        '{"role": "assistant", "content": "a", "tool_calls": 5}]', "'tool_calls'"),
    ("deep.json", '[{"role": "user", "content": "x", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}]",
     "nested too deeply"),
    ("bigint.json", '[{"role": "user", "content": "x", "n": ' + "9" * 5000 + "}]", "4300 digits"),
    ("bigint.jsonl", '{"role": "user", "content": "x"}\n{"role": "user", "content": "y", "n": ' + "9" * 5000
     + "}\n", "line 2"),
])
def test_malformed_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
                                    expected: str) -> None:
    src = tmp_path / name
    src.write_text(text)
    assert main(["clean", str(src), "--counter", "approx", "-q"]) == 1
    assert expected in one_line_error(capsys)


def test_bad_redis_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["thread", "list", "t1", "--redis", "redis://:::"]) == 1
    assert "invalid Redis URL" in one_line_error(capsys)
    assert main(["thread", "list", "t1", "--redis", "redis://u:secret@:::"]) == 1
    err = one_line_error(capsys)
    assert "secret" not in err


def test_bom_json_is_read_and_kept(tmp_path: Path) -> None:
    src = tmp_path / "conv.json"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(transcript(), indent=2).encode())
    assert main(["clean", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    out = (tmp_path / "conv.freemem.json").read_bytes()
    assert out.startswith(b"\xef\xbb\xbf[")
    assert len(json.loads(out.decode("utf-8-sig"))) == len(transcript())


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_compact_json_stays_compact(tmp_path: Path, separators: tuple[str, str]) -> None:
    src = tmp_path / "conv.json"
    src.write_text(json.dumps(transcript(), separators=separators))
    assert main(["clean", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    out = (tmp_path / "conv.freemem.json").read_text()
    pruned = json.loads(out)
    assert out == json.dumps(pruned, separators=separators, ensure_ascii=False)
    assert len(out) < len(src.read_text())


def test_indented_json_keeps_its_indent_and_unchanged_files_are_byte_exact(tmp_path: Path) -> None:
    src = tmp_path / "conv.json"
    src.write_text(json.dumps(transcript(), indent=4) + "\n")
    assert main(["clean", str(src), "--budget", "1500", "--counter", "approx", "-q"]) == 0
    out = (tmp_path / "conv.freemem.json").read_text()
    assert out == json.dumps(json.loads(out), indent=4, ensure_ascii=False) + "\n"
    # Nothing to clean: the file comes back byte for byte.
    small = tmp_path / "small.json"
    small.write_text('[ {"role":"user",  "content": "hi"} ]')
    doc = read_document(small)
    assert render_document(doc) == small.read_bytes()
