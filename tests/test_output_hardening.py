"""The output side (issue #18): special files are written in place, every format streams, CSV cells are not formulas.

Every case uses real files, real FIFOs (read by a thread), character devices made with ``os.mknod`` and
the real CLI in a subprocess. A device made here is ``makedev(1, 3)`` (what ``/dev/null`` is), so writing
it is harmless; ``/dev/null`` itself is never used as an output here.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

EXTS = [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".csv", ""]
N_GROUPS = 20000  # more rows than one Parquet row group (marsctl.writers._GROUP)


def pairs(n: int, **extra_at: dict) -> list[dict]:
    """n distinct pairs; ``extra_at={"5": {...}}`` adds fields to row 5."""
    rows = [{"id": f"i{i}", "prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]
    for i, fields in extra_at.items():
        rows[int(i)].update(fields)
    return rows


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def char_device(path: Path) -> Path:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def assert_refused(proc: subprocess.CompletedProcess, message: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert proc.stderr.count("Error:") == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def decode(data: bytes, ext: str) -> list[dict]:
    """Records from an output's bytes, by its format."""
    if ext == ".parquet":
        import pyarrow.parquet as pq

        return [{k: v for k, v in r.items() if v is not None} for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    if ext == ".csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if ext == ".jsonl.gz":
        data = gzip.decompress(data)
    elif ext == ".jsonl.zst":
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


class FifoReader:
    """A reader thread that takes every byte written to a FIFO."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as fh:
            self.data = fh.read()

    def join(self) -> bytes:
        self.thread.join(timeout=60)
        return self.data

    def release(self) -> None:
        """Unblock the reader when the command never opened the FIFO."""
        if self.thread.is_alive():
            with open(self.path, "wb"):
                pass
        self.thread.join(timeout=10)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".marsctl-" in p.name)


# ---------------------------------------------------------------------------------------- special files
@pytest.mark.parametrize("ext", EXTS)
def test_a_character_device_is_written_in_place_in_every_format(tmp_path, ext):
    src = write_pairs(tmp_path / "in.jsonl", pairs(5))
    dev = char_device(tmp_path / f"dev{ext}")
    proc = run_cli("convert", str(src), "--to", "trl", "-o", str(dev))
    assert proc.returncode == 0, proc.stderr
    assert dev.is_char_device() and os.stat(dev).st_rdev == os.makedev(1, 3)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", EXTS)
def test_a_named_pipe_gets_the_output_in_its_format(tmp_path, ext):
    src = write_pairs(tmp_path / "in.jsonl", pairs(7))
    reader = FifoReader(tmp_path / f"pipe{ext}")
    proc = run_cli("convert", str(src), "--to", "trl", "-o", str(reader.path))
    data = reader.join()
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)
    assert [r["id"] for r in decode(data, ext or ".jsonl")] == [f"i{i}" for i in range(7)]
    assert leftovers(tmp_path) == []


def test_dev_stdout_is_written_through_never_replaced(tmp_path):
    """``-o /dev/stdout`` (and a symlink to it named .parquet) with stdout a regular file: the file gets the bytes."""
    src = write_pairs(tmp_path / "in.jsonl", pairs(4))
    link = tmp_path / "out.parquet"
    link.symlink_to("/dev/stdout")
    for out, ext in (("/dev/stdout", ".jsonl"), (str(link), ".parquet")):
        target = tmp_path / f"stdout{ext}"
        with target.open("wb") as fh:
            proc = subprocess.run([sys.executable, "-m", "marsctl", "convert", str(src), "--to", "trl", "-o", out],
                                  stdout=fh, stderr=subprocess.PIPE, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert [r["id"] for r in decode(target.read_bytes(), ext)] == ["i0", "i1", "i2", "i3"]
    assert os.path.islink("/dev/stdout") and link.is_symlink()
    assert leftovers(tmp_path) == [] and not any(p.name.startswith(".stdout") for p in Path("/dev").iterdir())


def test_a_socket_or_block_device_output_is_refused(tmp_path):
    src = write_pairs(tmp_path / "in.jsonl", pairs(3))
    sock_path = tmp_path / "s.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        assert_refused(run_cli("convert", str(src), "--to", "trl", "-o", str(sock_path)), "is a socket")
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        sock.close()
    blk = tmp_path / "disk.parquet"
    try:
        os.mknod(blk, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    except PermissionError:
        pytest.skip("cannot make a block device here")
    assert_refused(run_cli("convert", str(src), "--to", "trl", "-o", str(blk)), "is a block device")
    assert blk.is_block_device()


def test_directory_outputs_refuse_a_device(tmp_path):
    src = write_pairs(tmp_path / "in.jsonl", pairs(3))
    dev = char_device(tmp_path / "model")
    assert_refused(run_cli("train", str(src), "-o", str(dev), "--epochs", "1"), "is not a directory")
    assert_refused(run_cli("refine", str(src), "--out", str(dev)), "is not a directory")
    assert dev.is_char_device()


def test_python_writers_keep_special_files(tmp_path):
    """write_bytes (the PNGs of report --plots), write_json and atomic_writer write a device or FIFO in place."""
    from marsctl.atomic import atomic_writer, write_bytes, write_json

    dev = char_device(tmp_path / "fig.png")
    write_bytes(b"\x89PNG...", dev)
    write_json({"a": 1}, dev)
    with atomic_writer(dev) as fh:
        fh.write("text")
    assert dev.is_char_device()
    for name, write, want in (("p.png", lambda p: write_bytes(b"png bytes", p), b"png bytes"),
                              ("j.json", lambda p: write_json({"a": 1}, p), b'{\n  "a": 1\n}\n')):
        reader = FifoReader(tmp_path / name)
        write(reader.path)
        assert reader.join() == want and stat.S_ISFIFO(os.lstat(reader.path).st_mode)
    assert leftovers(tmp_path) == []


def test_export_writes_a_device_or_fifo_in_place(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = tmp_path / "m"
    run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(model), "--epochs", "1", check=True)
    dev = char_device(tmp_path / "rm.onnx")
    proc = run_cli("export", str(model), "-o", str(dev))
    assert proc.returncode == 0, proc.stderr
    assert dev.is_char_device()
    reader = FifoReader(tmp_path / "pipe.onnx")
    proc = run_cli("export", str(model), "-o", str(reader.path))
    data = reader.join()
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert meta["marsctl.format"] == "marsctl-reward-onnx-v1"
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------- streaming
def test_parquet_is_streamed_in_row_groups_and_widened_for_later_fields(tmp_path):
    """Rows past the first row group with a new field, a float where ints were and a type where nulls were."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pairs(N_GROUPS)
    for i, r in enumerate(rows):
        r["n"] = i
        r["later"] = None
    late = N_GROUPS - 100
    rows[late].update(n=1.5, later="now", note={"k": [1, 2]})
    src = write_pairs(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    run_cli("convert", str(src), "--to", "trl", "-o", str(out), check=True)
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups >= 2
    schema = f.schema_arrow
    assert schema.field("n").type == pa.float64() and schema.field("later").type == pa.string()
    got = f.read().to_pylist()
    assert got[0]["note"] is None and got[late]["note"] == {"k": [1, 2]} and got[late]["later"] == "now"
    assert got[5]["n"] == 5.0 and got[late]["n"] == 1.5
    back = tmp_path / "back.jsonl"
    run_cli("convert", str(out), "--to", "trl", "-o", str(back), check=True)
    again = read_jsonl(back)
    assert again[late]["note"] == {"k": [1, 2]} and "note" not in again[0] and "later" not in again[1]
    assert leftovers(tmp_path) == []


def test_a_late_parquet_type_clash_leaves_nothing(tmp_path):
    rows = pairs(N_GROUPS)
    for i, r in enumerate(rows):
        r["n"] = i
    rows[N_GROUPS - 50]["n"] = "text"  # in a later row group than the first
    src = write_pairs(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    reader = FifoReader(tmp_path / "pipe.parquet")
    for target in (out, reader.path):
        proc = run_cli("convert", str(src), "--to", "trl", "-o", str(target))
        assert_refused(proc, "field 'n' holds values of different types")
    reader.release()
    assert not out.exists() and reader.data == b"" and leftovers(tmp_path) == []


def test_csv_header_widens_when_a_later_row_has_a_new_field(tmp_path):
    rows = pairs(6000, **{"5500": {"extra": "x", "meta": {"a": [1]}}})
    src = write_pairs(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.csv"
    run_cli("convert", str(src), "--to", "trl", "-o", str(out), check=True)
    with out.open(encoding="utf-8", newline="") as fh:
        got = list(csv.reader(fh))
    assert got[0][-2:] == ["extra", "meta"] and len(got) == 6001
    assert all(len(r) == len(got[0]) for r in got)
    assert got[1][-2:] == ["", ""] and got[5501][-2:] == ["x", '{"a": [1]}']


def test_compressed_jsonl_is_streamed_and_readable(tmp_path):
    src = write_pairs(tmp_path / "in.jsonl", pairs(3000))
    for ext in (".jsonl.gz", ".jsonl.zst"):
        out = tmp_path / f"out{ext}"
        run_cli("convert", str(src), "--to", "trl", "-o", str(out), check=True)
        assert [r["id"] for r in decode(out.read_bytes(), ext)] == [f"i{i}" for i in range(3000)]
        back = run_cli("convert", str(out), "--to", "trl", check=True).stdout.splitlines()
        assert len(back) == 3000


# ------------------------------------------------------------------------------------------ CSV formulas
def test_csv_cells_that_start_a_formula_get_a_quote(tmp_path):
    rows = pairs(3)
    rows[0].update(prompt="=HYPERLINK(\"http://x\")", chosen="+1", rejected="-1", id="@SUM(A1)")
    rows[1].update(prompt="\tcmd", chosen="\rcmd", rejected="'already quoted", n=-1.5)
    rows[2].update({"=key": "- bullet", "meta": {"x": "=1"}})
    src = write_pairs(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.csv"
    run_cli("convert", str(src), "--to", "trl", "-o", str(out), check=True)
    with out.open(encoding="utf-8", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert got[0]["prompt"] == "'=HYPERLINK(\"http://x\")" and got[0]["chosen"] == "'+1"
    assert got[0]["rejected"] == "'-1" and got[0]["id"] == "'@SUM(A1)"
    assert got[1]["prompt"] == "'\tcmd" and got[1]["chosen"] == "'\rcmd"
    assert got[1]["rejected"] == "'already quoted"  # not a formula: left as it is
    assert got[1]["n"] == "-1.5"  # a number, not text: left as it is
    assert got[2]["'=key"] == "'- bullet" and got[2]["meta"] == '{"x": "=1"}'
    for bad in ("=", "+", "-", "@", "\t", "\r"):
        assert not any(v.startswith(bad) for r in got for k, v in r.items() if v and k != "n"), bad
    # JSONL and Parquet keep the texts exactly; a CSV read back keeps the quote (documented)
    back = run_cli("convert", str(out), "--to", "trl", check=True).stdout.splitlines()
    assert json.loads(back[0])["prompt"] == "'=HYPERLINK(\"http://x\")"
    jl = tmp_path / "out.jsonl"
    run_cli("convert", str(src), "--to", "trl", "-o", str(jl), check=True)
    assert read_jsonl(jl)[0]["prompt"] == "=HYPERLINK(\"http://x\")"


@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
def test_a_symlinked_output_is_written_through_and_stays_a_link(tmp_path, ext):
    src = write_pairs(tmp_path / "in.jsonl", pairs(3))
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / f"v3{ext}"
    real.write_bytes(b"old")
    link = tmp_path / f"current{ext}"
    link.symlink_to(real)
    run_cli("convert", str(src), "--to", "trl", "-o", str(link), check=True)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert [r["id"] for r in decode(real.read_bytes(), ext)] == ["i0", "i1", "i2"]
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "runs") == []
