"""The input side under stress (issue 18): pipes and FIFOs read once and whole, ragged CSV rows, over-long lines.

Every case runs the real CLI in a subprocess on real files: FIFOs fed slowly by a writer thread, process
substitution through bash, compressed files made here with gzip, zstandard and lzma, and decompression bombs
read under an address-space limit (the reader must refuse them without holding more than the line cap).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import lzma
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from conftest import read_jsonl

from marsctl import inputs, jsonarray

ROWS = [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}", "pred_margin": 0.5} for i in range(1, 7)]
JSONL = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)
PACK: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress, "zst": zstandard.ZstdCompressor().compress, "xz": lzma.compress}


def csv_bytes(rows: list[dict], fields: tuple[str, ...] = ("prompt", "chosen", "rejected", "pred_margin")) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


# A child's ru_maxrss keeps the high-water mark of the address space it was forked from (Linux carries it
# across exec), so a child forked from a big pytest process reports pytest's memory. This small launcher
# forks marsctl from a fresh interpreter and writes the marsctl child's own peak RSS (KiB) to a file.
LAUNCHER = """
import os, resource, sys
rss_file, limit = sys.argv[1], int(sys.argv[2])
pid = os.fork()
if pid == 0:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
_, status, usage = os.wait4(pid, 0)
with open(rss_file, "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def cli(*args: str, stdin: bytes | None = None, env: dict | None = None,
        limit_as: int | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """Run marsctl in a subprocess: ``(the completed process, its own peak resident memory in bytes)``.

    ``limit_as`` caps the child's address space (RLIMIT_AS): a reader that held a whole bomb would die there.
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        cmd = [sys.executable, "-c", LAUNCHER, rss_file, str(limit_as or 0), "-m", "marsctl", *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, env=full_env, timeout=600,
                              stdin=subprocess.DEVNULL if stdin is None else None)
        rss = int(Path(rss_file).read_text()) * 1024
    done = subprocess.CompletedProcess(args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    return done, rss


def slow_writer(path: Path, data: bytes, pieces: int = 6, pause: float = 0.15) -> threading.Thread:
    """Write ``data`` into the FIFO ``path`` from a thread, in pieces with pauses (the first piece is one byte)."""

    def run() -> None:
        with open(path, "wb", buffering=0) as fh:
            cuts = [0, 1, *(len(data) * k // pieces for k in range(1, pieces)), len(data)]
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    fh.write(data[a:b])
                    time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def assert_refused(proc: subprocess.CompletedProcess, out: Path, *expected: str) -> None:
    """Exit 2, one 'Error:' line (maybe a 'Hint:'), no traceback, nothing written, no temporaries left."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith("Error: "), proc.stderr
    assert all(x.startswith("Hint: ") for x in lines[1:]), proc.stderr
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    for text in expected:
        assert text in lines[0], (text, lines[0])


# ------------------------------------------------------------------------------------ read once, read whole
FIFO_CASES = [
    pytest.param("pairs.jsonl", JSONL, id="jsonl"),
    pytest.param("pairs.jsonl.gz", PACK["gz"](JSONL), id="gzip"),
    pytest.param("pairs.jsonl.zst", PACK["zst"](JSONL), id="zstd"),
    pytest.param("pairs.jsonl.xz", PACK["xz"](JSONL), id="xz"),
    pytest.param("fd63", PACK["gz"](JSONL), id="gzip-no-extension"),  # as <(...) gives: /dev/fd/63
    pytest.param("pairs.csv", csv_bytes(ROWS), id="csv"),
    pytest.param("pairs.csv.gz", PACK["gz"](csv_bytes(ROWS)), id="csv-gzip"),
    pytest.param("pairs.json", json.dumps(ROWS, indent=1).encode(), id="json-array"),
]


@pytest.mark.parametrize(("fname", "data"), FIFO_CASES)
@pytest.mark.parametrize("command", ["convert", "select"])  # select reads its input twice (check, then work)
def test_fifo_loses_nothing(tmp_path, fname, data, command):
    fifo, out = tmp_path / fname, tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    writer = slow_writer(fifo, data)
    args = ["--to", "trl"] if command == "convert" else ["--budget", "6"]
    proc, _ = cli(command, str(fifo), *args, "-o", str(out))
    writer.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [r["prompt"] for r in read_jsonl(out)] == [r["prompt"] for r in ROWS]
    assert f"read 6 pairs from {fifo}" in proc.stderr


@pytest.mark.parametrize("kind", ["plain", "gz", "zst", "xz"])
def test_process_substitution_and_stdin(tmp_path, kind):
    """``<(slow producer)`` and a slow pipe into stdin: all six pairs, for convert (one pass) and select (two)."""
    (tmp_path / "src").write_bytes(JSONL if kind == "plain" else PACK[kind](JSONL))
    if kind == "plain":  # one byte, then a line at a time
        producer = '(head -c 1 src; sleep 0.3; tail -c +2 src | while IFS= read -r l; do echo "$l"; sleep 0.1; done)'
    else:  # the magic number cut in two
        producer = "(head -c 3 src; sleep 0.3; tail -c +4 src)"
    marsctl = f"{sys.executable} -m marsctl"
    commands = {"o1.jsonl": f"{marsctl} convert <{producer} --to trl -o o1.jsonl",
                "o2.jsonl": f"{marsctl} select <{producer} --budget 6 -o o2.jsonl",
                "o3.jsonl": f"{producer} | {marsctl} convert - --to trl -o o3.jsonl",
                "o4.jsonl": f"{producer} | {marsctl} select - --budget 6 -o o4.jsonl"}
    for name, cmd in commands.items():
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, (cmd, proc.stderr)
        assert [r["prompt"] for r in read_jsonl(tmp_path / name)] == [r["prompt"] for r in ROWS], cmd


def test_parquet_on_a_fifo_is_copied_then_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(ROWS), sink)
    data = sink.getvalue().to_pybytes()
    for command, args in (("convert", ["--to", "trl"]), ("select", ["--budget", "6"])):
        fifo, out = tmp_path / f"{command}.parquet", tmp_path / f"{command}.jsonl"
        os.mkfifo(fifo)
        writer = slow_writer(fifo, data)
        proc, _ = cli(command, str(fifo), *args, "-o", str(out))
        writer.join(timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert [r["prompt"] for r in read_jsonl(out)] == [r["prompt"] for r in ROWS]
    proc, _ = cli("convert", "-", "--to", "trl", "-o", str(tmp_path / "stdin.jsonl"), stdin=data)
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(tmp_path / "stdin.jsonl")) == 6


@pytest.mark.parametrize("command", ["convert", "select"])
def test_a_truncated_stream_on_a_fifo_is_an_error(tmp_path, command):
    """A compressed stream cut short fails loudly (exit 2), never as a shorter input."""
    fifo, out = tmp_path / "pairs.jsonl.gz", tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    many = b"".join(b'{"prompt": "p%d", "chosen": "a", "rejected": "b", "pred_margin": 0.5}\n' % i for i in range(300))
    writer = slow_writer(fifo, PACK["gz"](many)[:-40])
    args = ["--to", "trl"] if command == "convert" else ["--budget", "6"]
    proc, _ = cli(command, str(fifo), *args, "-o", str(out))
    writer.join(timeout=60)
    assert_refused(proc, out, str(fifo), "cannot read")


# ----------------------------------------------------------------------------------------- ragged CSV rows
HEADER = b"prompt,chosen,rejected\n"
RAGGED = [
    pytest.param(HEADER + b"x,p1,a,b\nx,p2,a,b\n", "line 2: row 1 has 4 fields, more than the header's 3",
                 id="every-row-longer"),  # pandas took the first column as an index: prompt became 'p1'
    pytest.param(HEADER + b"p1,a,b\np2,a,b,c\np3,a,b\n", "line 3: row 2 has 4 fields, more than", id="one-longer"),
    pytest.param(HEADER + b"p1,a,b\np2,a\n", "line 3: row 2 has 2 fields, fewer than the header's 3", id="fewer"),
    pytest.param(HEADER + b'p1,"multi\nline",b\n\np2,a,b,"x\ny"\n', "line 6: row 2 has 4 fields", id="after-quoted"),
    pytest.param(HEADER + b"p1,a,b\n" * 5000 + b"p,a,b,\n", "line 5002: row 5001 has 4 fields", id="late"),
]


@pytest.mark.parametrize(("data", "expected"), RAGGED)
@pytest.mark.parametrize("packing", ["plain", "gz"])
def test_ragged_csv_rows_are_refused(tmp_path, data, expected, packing):
    name = "pairs.csv" if packing == "plain" else "pairs.csv.gz"
    src, out = tmp_path / name, tmp_path / "out.jsonl"
    src.write_bytes(data if packing == "plain" else gzip.compress(data))
    proc, _ = cli("convert", str(src), "--to", "trl", "-o", str(out))
    assert_refused(proc, out, f"{src} {expected}")


def test_ragged_csv_on_a_fifo_is_refused(tmp_path):
    fifo, out = tmp_path / "pairs.csv", tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    writer = slow_writer(fifo, HEADER + b"p1,a,b\np2,a,b,c\n")
    proc, _ = cli("select", str(fifo), "--budget", "1", "-o", str(out))
    writer.join(timeout=60)
    assert_refused(proc, out, f"{fifo} line 3: row 2 has 4 fields")


def test_well_formed_csv_still_reads(tmp_path):
    """Quoted separators, newlines inside quotes, blank lines, CRLF, a BOM and a 300 KB field are all fine."""
    big = "z" * 300_000
    rows = [{"prompt": "a, b", "chosen": "line\nbreak", "rejected": "r1"},
            {"prompt": big, "chosen": '"quoted"', "rejected": "r2"}]
    data = b"\xef\xbb\xbf" + csv_bytes(rows, ("prompt", "chosen", "rejected")).replace(b"\n", b"\r\n", 1) + b"\n"
    src, out = tmp_path / "pairs.csv", tmp_path / "out.jsonl"
    src.write_bytes(data)
    proc, _ = cli("convert", str(src), "--to", "trl", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = read_jsonl(out)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in got] == [
        ("a, b", "line\nbreak", "r1"), (big, '"quoted"', "r2")]


# ------------------------------------------------------------------------------------------ over-long lines
LIMIT_AS = 1536 << 20  # the address space a reader gets: a 2 GB bomb held whole cannot fit
BOMB = 200 << 20  # bytes one line expands to: over the 64 MiB cap, yet small to make


def bomb_line() -> bytes:
    return b'{"prompt": "' + b"a" * BOMB  # no newline, never closed


@pytest.mark.parametrize("kind", ["gz", "zst", "xz"])
def test_a_compressed_bomb_stops_at_the_cap(tmp_path, kind):
    src, out = tmp_path / f"bomb.jsonl.{kind}", tmp_path / "out.jsonl"
    src.write_bytes(PACK[kind](JSONL + bomb_line()))
    assert src.stat().st_size < 1 << 20
    proc, rss = cli("convert", str(src), "--to", "trl", "-o", str(out), limit_as=LIMIT_AS)
    assert_refused(proc, out, f"{src} line 7: the line is longer than 64 MiB")
    assert "MARSCTL_MAX_LINE_BYTES" in proc.stderr
    assert rss < 400 << 20, rss  # the cap (64 MiB) plus a piece, plus the interpreter: never the 200 MiB line


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_compressed_bomb_in_csv_or_a_json_array_stops_at_the_cap(tmp_path, fmt):
    if fmt == "csv":
        data = HEADER + b'p1,a,"' + b"b" * BOMB  # one field that never ends
        expected = "line 2: the line is longer than 64 MiB"
    else:
        data = b'[{"prompt": "p0", "chosen": "a", "rejected": "b"},\n {"prompt": "' + b"a" * BOMB
        expected = "row 2: the array element is longer than 64 MiB"
    src, out = tmp_path / f"bomb.{fmt}.zst", tmp_path / "out.jsonl"
    src.write_bytes(PACK["zst"](data))
    proc, rss = cli("convert", str(src), "--to", "trl", "-o", str(out), limit_as=LIMIT_AS)
    assert_refused(proc, out, f"{src} {expected}")
    assert rss < 700 << 20, rss


def test_a_csv_row_of_many_short_lines_stops_at_the_cap(tmp_path):
    """A quoted field that goes on over many short lines: the row, not each line, is what the cap bounds."""
    src, out = tmp_path / "rows.csv.gz", tmp_path / "out.jsonl"
    src.write_bytes(gzip.compress(HEADER + b'p1,a,"' + b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n" * 4000, 1))
    proc, _ = cli("convert", str(src), "--to", "trl", "-o", str(out), env={"MARSCTL_MAX_LINE_BYTES": "50000"})
    assert_refused(proc, out, f"{src} line 1", "a CSV row is longer than 50000 bytes")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_the_cap_is_configurable_and_exact(tmp_path, fmt):
    """``MARSCTL_MAX_LINE_BYTES`` sets the cap: a row of exactly the cap is read, one byte more is refused."""
    cap = 2000
    for size, good in ((cap, True), (cap + 1, False)):
        if fmt == "csv":
            row = b"p,a,b," + b"x" * (size - 6)
            data = b"prompt,chosen,rejected,x\n" + row + b"\n"
        else:
            base = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "x": ""}).encode()
            row = base[:-2] + b"x" * (size - len(base)) + base[-2:]
            data = row + b"\n" if fmt == "jsonl" else b"[" + row + b"]"
        assert len(row) == size
        src, out = tmp_path / f"in{size}.{fmt}", tmp_path / f"out{size}.jsonl"
        src.write_bytes(data)
        proc, _ = cli("convert", str(src), "--to", "trl", "-o", str(out), env={"MARSCTL_MAX_LINE_BYTES": str(cap)})
        if good:
            assert proc.returncode == 0, proc.stderr
        else:
            assert_refused(proc, out, str(src), "is longer than 2000 bytes")
    proc, _ = cli("convert", str(src), "--to", "trl", "-o", str(tmp_path / "x.jsonl"),
                  env={"MARSCTL_MAX_LINE_BYTES": "lots"})
    assert proc.returncode == 2 and "MARSCTL_MAX_LINE_BYTES='lots'" in proc.stderr


def test_a_plain_long_line_is_read_in_bounded_pieces(tmp_path):
    """A 24 MiB line under a 4 MiB cap: refused on line 2, memory far below the line's size."""
    src, out = tmp_path / "long.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b"[" * (24 << 20))
    proc, rss = cli("convert", str(src), "--to", "trl", "-o", str(out), env={"MARSCTL_MAX_LINE_BYTES": str(4 << 20)},
                    limit_as=LIMIT_AS)
    assert_refused(proc, out, f"{src} line 2: the line is longer than 4 MiB")
    assert rss < 300 << 20, rss


# ---------------------------------------------------------------------------------- the JSON array reader
def test_json_array_reader_matches_json_loads_at_every_piece_boundary(monkeypatch):
    """With tiny pieces every token is cut somewhere: the elements still come out as json.loads gives them."""
    rows = [{"prompt": "é" * (i % 5) + "\\n", "n": 12345678901234567890 * i, "f": 1.5e-7, "t": True, "z": None,
             "l": [1, [2, {"a": "b"}]], "s": "\u20ac\U0001f600"} for i in range(30)] + [7, "x", None, 3.25]
    data = json.dumps(rows, ensure_ascii=False, indent=2).encode()
    for piece in (1, 2, 3, 7, 64):
        monkeypatch.setattr(jsonarray, "_PIECE", piece)
        got = [v for _, v in jsonarray.iter_json_array(io.BytesIO(data), "a.json")]
        assert got == rows, piece


@pytest.mark.parametrize(("data", "expected"), [
    (b'[{"a": 1}, {"a": NaN}]', "a.json row 2: NaN is not valid JSON"),
    (b'[{"a": 1} {"a": 2}]', "a.json row 2: invalid JSON array (expected ',' or ']', found '{')"),
    (b'[{"a": 1}, {"a": 2', "a.json row 2: invalid JSON"),
    (b'[{"a": 1}] [', "a.json row 1: text after the JSON array's closing ']'"),
    (b'[{"a": "\\ud800"}]', "a.json row 1: field 'a' holds a lone surrogate"),
    (b'[{"a": "caf\xe9"}]', "a.json: not valid UTF-8 at byte offset 11"),
    (b'[{"a": 1}, {"a": "\x00"}]', "a.json: NUL byte at byte offset 18"),
])
def test_json_array_reader_errors(data, expected, monkeypatch):
    from marsctl.errors import DataError

    for piece in (3, 1 << 20):
        monkeypatch.setattr(jsonarray, "_PIECE", piece)
        with pytest.raises(DataError) as e:
            list(jsonarray.iter_json_array(io.BytesIO(data), "a.json"))
        assert expected in str(e.value), (piece, str(e.value))


def test_rereadable_copies_a_fifo_whole_and_keeps_its_extensions(tmp_path):
    """What a two-pass reader gets for a FIFO: a regular file, with every byte and the FIFO's extensions."""
    fifo = tmp_path / "pairs.csv.gz"
    os.mkfifo(fifo)
    data = PACK["gz"](csv_bytes(ROWS))
    writer = slow_writer(fifo, data)
    assert inputs.read_once(fifo) and inputs.read_once("-") and not inputs.read_once(tmp_path)
    with inputs.rereadable(fifo) as (copy, name):
        writer.join(timeout=60)
        assert name == str(fifo) and copy.endswith(".csv.gz") and not inputs.read_once(copy)
        assert Path(copy).read_bytes() == data
    assert not Path(copy).exists()
    regular = tmp_path / "pairs.jsonl"
    regular.write_bytes(JSONL)
    with inputs.rereadable(regular) as (same, _):
        assert same == str(regular)
