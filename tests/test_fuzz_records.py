"""Fuzzing the record reader: whatever bytes a file holds, read_pairs returns records or raises a MarsError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marsctl.errors import MarsError
from marsctl.records import normalize_row, read_pairs

FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=10_000)

# --- JSON text fragments, built as text so that invalid JSON (NaN, huge ints, deep nesting) can be produced.

# st.text() leaves out surrogates (even given an alphabet that holds them) and st.characters() rarely draws
# one, so they are asked for explicitly: the full Unicode range, lone surrogates included.
any_char = st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text() | st.lists(any_char, max_size=20).map("".join)
ascii_flag = st.booleans()


@st.composite
def json_string(draw, text=any_text) -> str:
    """A JSON string literal, ASCII-escaped (lone surrogates become \\udXXX) or raw."""
    return json.dumps(draw(text), ensure_ascii=draw(ascii_flag))


def _nest(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


special_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0", "0.0",
                                   "1e-400", "01", "1.", ".5", "+1", "0x10"])
huge_int = st.one_of(st.integers(1, 40), st.integers(4290, 6000)).map(lambda n: "-" * (n % 2) + "9" * n)
escaped = st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\ufeff"'])
deep = st.builds(_nest, st.integers(1, 120_000), st.sampled_from(["list", "dict"]))
scalar = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f)),
    special_numbers,
    huge_int,
    json_string(),
    json_string(any_char),
    escaped,
)
json_value = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(json_string(), children), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
    ),
    max_leaves=12,
) | deep | special_numbers | huge_int | escaped  # the odd values again at top level, so they come often

# --- valid rows in the three shapes the reader accepts.

good_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)


def _msgs(draw, n: int) -> list[dict[str, str]]:
    return [{"role": draw(st.sampled_from(["user", "assistant"])), "content": draw(good_text)} for _ in range(n)]


@st.composite
def valid_row(draw) -> dict:
    """A row read_pairs accepts: TRL strings, chat messages, or HH dialogues, with optional id and extras."""
    shape = draw(st.sampled_from(["trl", "chat", "hh"]))
    if shape == "trl":
        row = {"prompt": draw(good_text), "chosen": draw(good_text), "rejected": draw(good_text)}
    elif shape == "chat":
        shared = _msgs(draw, 1)
        row = {"chosen": shared + _msgs(draw, 1), "rejected": shared + _msgs(draw, 1)}
    else:
        dialogue = "\n\nHuman: " + draw(good_text) + "\n\nAssistant:"
        row = {"chosen": dialogue + draw(good_text), "rejected": dialogue + draw(good_text)}
    if draw(st.booleans()):
        row["pred_margin"] = draw(st.floats(-50, 50))
    if draw(st.booleans()):
        row["source"] = draw(good_text)
    return row


@st.composite
def near_valid_line(draw) -> bytes:
    """A valid row, then mutated: values replaced, keys dropped or duplicated, bytes cut or inserted."""
    fields = [(json.dumps(k), json.dumps(v, ensure_ascii=draw(ascii_flag))) for k, v in draw(valid_row()).items()]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "drop", "duplicate", "add", "id"]))
        i = draw(st.integers(0, max(len(fields) - 1, 0)))
        if op == "add" or not fields:
            fields.append((draw(json_string()), draw(json_value)))
        elif op == "replace":
            fields[i] = (fields[i][0], draw(json_value))
        elif op == "drop":
            del fields[i]
        elif op == "duplicate":
            fields.append((fields[i][0], draw(json_value)))
        else:
            fields.append(('"id"', draw(json_value)))
    line = ("{" + ",".join(f"{k}:{v}" for k, v in fields) + "}").encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["truncate", "insert", "flip"]))
        at = draw(st.integers(0, len(line)))
        if op == "truncate":
            line = line[:at]
        elif op == "insert":
            line = line[:at] + draw(st.binary(min_size=1, max_size=8)) + line[at:]
        elif at < len(line):
            line = line[:at] + bytes([draw(st.integers(0, 255))]) + line[at + 1:]
    return line


@st.composite
def extra_field_line(draw) -> bytes:
    """A valid row with one more key holding any JSON value (NaN, a lone surrogate, a huge int, deep nesting)."""
    row = json.dumps(draw(valid_row()), ensure_ascii=draw(ascii_flag))
    return (row[:-1] + f", {draw(json_string())}: {draw(json_value)}}}").encode("utf-8", "surrogatepass")


@st.composite
def near_valid_file(draw) -> bytes:
    """Some valid lines and some mutated ones, with LF or CRLF endings, maybe a BOM and blank lines."""
    lines = draw(st.lists(
        st.one_of(valid_row().map(lambda r: json.dumps(r).encode()), near_valid_line(), extra_field_line(),
                  st.just(b"")),
        min_size=1, max_size=5))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = eol.join(lines) + draw(st.sampled_from([b"", eol]))
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + data


# --- the property.


def check_read(data: bytes) -> list[dict] | None:
    """read_pairs on these bytes either returns records that can be written back as UTF-8, or raises MarsError.

    Any other exception escapes and fails the test.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(data)
        try:
            records = read_pairs(path)
        except MarsError as e:
            assert str(e).startswith(str(path)), str(e)
            return None
    for rec in records:
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        json.dumps(out, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return records


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_read_or_data_error(data):
    check_read(data)


@FAST
@given(near_valid_file())
def test_mutated_rows_read_or_data_error(data):
    check_read(data)


@FAST
@given(valid_row(), extra_field_line())
def test_extra_field_read_or_data_error(row, line):
    """One odd value in an otherwise valid file: it is refused, or it comes back writable."""
    check_read(json.dumps(row).encode() + b"\n" + line + b"\n")


@FAST
@given(st.binary(min_size=1, max_size=30).map(lambda b: bytes(x for x in b if x >= 0x20 and x not in b'"\\')),
       st.booleans())
def test_raw_bytes_inside_a_string(raw, valid):
    """Bytes that keep the JSON well-formed: read exactly when they are UTF-8, refused when not."""
    if valid:
        raw = raw.decode("utf-8", "replace").encode("utf-8")
    records = check_read(b'{"prompt": "p' + raw + b'", "chosen": "a", "rejected": "b"}\n')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert records is None
    else:
        assert records is not None and records[0]["prompt"] == "p" + text


@FAST
@given(st.lists(valid_row(), min_size=1, max_size=5), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_valid_rows_always_read(rows, eol, bom):
    for i, r in enumerate(rows):
        r["id"] = f"r{i}"
    data = ("\ufeff" if bom else "") + eol.join(json.dumps(r, ensure_ascii=False) for r in rows) + eol
    records = check_read(data.encode("utf-8"))
    assert records is not None
    assert [r["id"] for r in records] == [f"r{i}" for i in range(len(rows))]
    assert [r.get("source") for r in records] == [r.get("source") for r in rows]


python_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=10,
)


@FAST
@given(valid_row(), st.dictionaries(any_text, python_value, max_size=3))
def test_normalize_row_output_is_always_writable(row, extra):
    """Called directly (not through read_pairs), normalize_row still refuses lone surrogates in any key or value."""
    row.update(extra)
    try:
        rec = normalize_row(row, "here")
    except MarsError as e:
        assert str(e).startswith("here: "), str(e)
        return
    json.dumps(rec, ensure_ascii=False, allow_nan=False).encode("utf-8")


@pytest.mark.slow
@SLOW
@given(st.one_of(st.binary(max_size=2000), near_valid_file()))
def test_reader_fuzz_long(data):
    check_read(data)
