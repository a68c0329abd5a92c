"""Bad input files through the real CLI: exit 2, one 'Error:' line naming file and line, no output, no traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest
from conftest import read_jsonl, run_cli

GOOD = b'{"prompt": "p%d", "chosen": "a", "rejected": "b", "pred_margin": 0.5}'
ROW1 = GOOD % 1 + b"\n"


def bad_line(prompt: bytes = b"x", extra: bytes = b"") -> bytes:
    """Line 2 of a file: a row with this raw prompt text and raw extra JSON members."""
    return b'{"prompt": "' + prompt + b'", "chosen": "a", "rejected": "b", "pred_margin": 0.5' + extra + b"}\n"


CASES = [
    pytest.param(ROW1 + bad_line(b"caf\xc3"), ["line 2", "not valid UTF-8", "byte offset 84", "0xc3"],
                 id="invalid-utf8"),
    pytest.param(ROW1 + bad_line("café".encode("latin-1")), ["line 2", "not valid UTF-8", "byte offset 84", "0xe9"],
                 id="latin1"),
    pytest.param(bytes(range(128, 256)) + bytes(range(1, 128)), ["line 1", "not valid UTF-8 at byte offset 0"],
                 id="binary-garbage"),
    pytest.param(gzip.compress(ROW1)[:-9], ["cannot read", "end-of-stream"], id="truncated-gzip"),
    pytest.param(b"PAR1\x15\x04\x15\x10\x00\x00\x00PAR1", ["cannot be read as Parquet"], id="broken-parquet"),
    pytest.param(ROW1 + bad_line(b"x\\ud800"), ["line 2", "field 'prompt'", "lone surrogate", "\\ud800"],
                 id="lone-surrogate"),
    pytest.param(ROW1 + bad_line(extra=b', "meta": {"tags": ["ok", "\\udc00"]}'),
                 ["line 2", "field 'meta.tags[1]'", "lone surrogate"], id="lone-surrogate-in-extra-key"),
    pytest.param(ROW1 + bad_line(extra=b', "n": ' + b"7" * 5000), ["line 2", "5000 digits"], id="huge-int"),
    pytest.param(ROW1 + bad_line(extra=b', "m": ' + b"[" * 100_000 + b"]" * 100_000), ["line 2", "nested too deeply"],
                 id="nesting-100k"),
    pytest.param(ROW1 + bad_line(extra=b', "m": ' + b"[" * 150 + b"]" * 150), ["line 2", "field 'm[0][0]'",
                 "nested more than 100 levels"], id="nesting-150"),
    pytest.param(ROW1 + bad_line(extra=b', "pred_margin": NaN'), ["line 2", "NaN is not valid JSON"], id="nan"),
    pytest.param(ROW1 + bad_line(extra=b', "s": -Infinity'), ["line 2", "-Infinity is not valid JSON"], id="infinity"),
    pytest.param(ROW1 + bad_line(extra=b', "s": 1e999'), ["line 2", "1e999 is too large"], id="float-overflow"),
    pytest.param(ROW1 + bad_line(b"x\x00y"), ["line 2", "NUL byte at byte offset 82"], id="nul-byte"),
    pytest.param("\ufeff".encode("utf-16-le") + ROW1.decode().encode("utf-16-le"), ["line 1", "UTF-16"], id="utf16"),
    pytest.param(ROW1 + b"\xef\xbb\xbf" + GOOD % 2 + b"\n", ["line 2", "byte-order mark"], id="bom-on-line-2"),
]


def assert_refused(proc: subprocess.CompletedProcess, out, *expected: str) -> None:
    """Exit 2, exactly one 'Error:' line (maybe a 'Hint:'), nothing on stdout, no output file."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: "), proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) <= 2 and all(x.startswith("Hint: ") for x in lines[1:]), proc.stderr
    assert proc.stdout == ""
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name != "home"] == ["pairs.jsonl"]  # no temporaries either
    for text in expected:
        assert text in lines[0], (text, lines[0])


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_bad_file_is_refused_by_select(tmp_path, data, expected):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(data)
    proc = run_cli("select", str(src), "--budget", "1", "-o", str(out))
    assert_refused(proc, out, str(src), *expected)


@pytest.mark.parametrize(("data", "expected"), [CASES[0], CASES[5], CASES[10]])
def test_bad_file_is_refused_by_train(tmp_path, data, expected):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "model"
    src.write_bytes(data)
    proc = run_cli("train", str(src), "-o", str(out))
    assert_refused(proc, out, str(src), *expected)


@pytest.mark.parametrize("eol_bom", [(b"\r\n", b""), (b"\n", b"\xef\xbb\xbf"), (b"\r\n", b"\xef\xbb\xbf")],
                         ids=["crlf", "bom", "bom-crlf"])
def test_bom_and_crlf_are_accepted(tmp_path, eol_bom):
    eol, bom = eol_bom
    src, out = tmp_path / "pairs.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(bom + GOOD % 1 + eol + GOOD % 2 + eol)
    proc = run_cli("select", str(src), "--budget", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(out)
    assert [r["prompt"] for r in rows] == ["p1", "p2"]
    assert sum(r["budget"] for r in rows) == 1


def run_shell(cmd: str, tmp_path) -> subprocess.CompletedProcess:
    """Run marsctl through bash, so the test can close or redirect stdin as a user would."""
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "MARSCTL": f"{sys.executable} -m marsctl"})


@pytest.mark.parametrize(("redirect", "expected"), [("<&-", "no input: stdin is closed"),
                                                    ("0>/dev/null", "no input: stdin cannot be read")],
                         ids=["closed", "write-only"])
def test_unusable_stdin(tmp_path, redirect, expected):
    (tmp_path / "pairs.jsonl").write_bytes(ROW1)  # present so assert_refused's listing check holds
    out = tmp_path / "out.jsonl"
    proc = run_shell(f"$MARSCTL select - --budget 1 -o {out} {redirect}", tmp_path)
    assert_refused(proc, out, expected)


def test_gzip_on_a_pipe_is_read(tmp_path):  # gzip, zstd and xz input is decompressed (tests/test_formats.py)
    (tmp_path / "pairs.jsonl").write_bytes(gzip.compress(ROW1 + GOOD % 2 + b"\n"))
    out = tmp_path / "out.jsonl"
    proc = run_shell(f"$MARSCTL select - --budget 1 -o {out} < pairs.jsonl", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["prompt"] for r in read_jsonl(out)] == ["p1", "p2"]


def test_parquet_on_a_pipe_names_stdin(tmp_path):
    (tmp_path / "pairs.jsonl").write_bytes(b"PAR1\x15\x04\x15\x10\x00\x00\x00PAR1")
    out = tmp_path / "out.jsonl"
    proc = run_shell(f"$MARSCTL select - --budget 1 -o {out} < pairs.jsonl", tmp_path)
    assert_refused(proc, out, "<stdin>: cannot be read as Parquet")  # stdin is spooled, then read as Parquet


def test_valid_rows_on_a_pipe_still_work(tmp_path):
    (tmp_path / "pairs.jsonl").write_bytes(ROW1 + GOOD % 2 + b"\n")
    proc = run_shell("cat pairs.jsonl | $MARSCTL select - --budget 2", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 2 and '"p2"' in proc.stdout


@pytest.mark.parametrize(("make", "expected"), [("dir", "is a directory, expected a JSONL file"),
                                                ("missing", "no such file")])
def test_directory_or_missing_input(tmp_path, make, expected):
    src, out = tmp_path / "pairs.jsonl", tmp_path / "elsewhere" / "out.jsonl"
    if make == "dir":
        src.mkdir()
    proc = run_cli("select", str(src), "--budget", "1", "-o", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"Error: {src}: {expected}"), proc.stderr
    assert proc.stdout == "" and not out.exists()


JSON_LINES = [  # lines orjson refuses or would read differently; json gives the value or the message
    '{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e400}', '{"a": 1.7976931348623159e308}',
    '{"a": ' + "7" * 5000 + "}", '{"a": 18446744073709551616}', '{"a": -9223372036854775809}',
    '{"a": [1, {"b": 99999999999999999999}]}', '{"a": 1e19}', '{"a": 18446744073709551615}', '{"a": -0.0}',
    '{"a": 1, "a": 2}', '{"a": "\\ud800"}', '{"\\udc00": 1}', '{"a": "\\ud83d\\ude00"}', '{"a": [1,]}',
    '{"a": "x\x01"}', '{"m": ' + "[" * 150 + "]" * 150 + "}", '{"m": ' + "[" * 2000 + "]" * 2000 + "}",
    '{"a": 1} x', "[1, 2", '"\\u0000"', "5e-324", "1e-400",
]


@pytest.mark.parametrize("line", JSON_LINES)
def test_orjson_fast_path_reads_and_refuses_as_json_does(line, monkeypatch):
    from marsctl import jsonio
    from marsctl.errors import DataError

    def outcome() -> tuple[str, object]:
        try:
            return "value", jsonio._parse_json_line(line, "f line 1")
        except DataError as e:
            return "error", str(e)

    fast = outcome()

    def refuse(text: str) -> object:
        raise jsonio.orjson.JSONDecodeError("forced", text, 0)

    monkeypatch.setattr(jsonio.orjson, "loads", refuse)  # today's json path alone
    slow = outcome()
    assert repr(fast) == repr(slow)  # repr: 2**64 stays an int, -0.0 stays negative
