"""Record parsing: the three input shapes, ids, extra keys, and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl

from marsctl.errors import DataError
from marsctl.records import content_id, read_pairs, write_records


def write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "pairs.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_trl_shape_keeps_id_and_extra_keys():
    rows = read_pairs(FIXTURES / "tiny.jsonl")
    raw = read_jsonl(FIXTURES / "tiny.jsonl")
    assert len(rows) == len(raw) == 40
    assert rows[0]["id"] == raw[0]["id"]
    assert rows[0]["subset"] == raw[0]["subset"] and rows[0]["source"] == raw[0]["source"]
    assert rows[0]["prompt"] == raw[0]["prompt"]


def test_hh_raw_dialogues_split_at_last_assistant_turn():
    rows = read_pairs(FIXTURES / "shape_hh_raw.jsonl")
    original = read_jsonl(FIXTURES / "hh_train.jsonl")[:5]
    for got, want in zip(rows, original, strict=True):
        assert got["prompt"] == want["prompt"]
        assert got["chosen"] == want["chosen"] and got["rejected"] == want["rejected"]
        assert got["prompt"].endswith("\n\nAssistant:")
        assert got["id"] == content_id(want["prompt"], want["chosen"], want["rejected"])


def test_chat_messages_shared_prefix_is_prompt():
    rows = read_pairs(FIXTURES / "shape_chat.jsonl")
    raw = read_jsonl(FIXTURES / "shape_chat.jsonl")
    assert rows[0]["prompt"].startswith("User: ")
    assert rows[0]["chosen"] == raw[0]["chosen"][1]["content"]
    assert rows[0]["rejected"] == raw[0]["rejected"][1]["content"]
    assert rows[0]["id"] == raw[0]["id"]


def test_chat_with_explicit_prompt(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Hi?"}],
           "chosen": [{"role": "assistant", "content": "Hello!"}],
           "rejected": [{"role": "assistant", "content": "Go away."}]}
    rec = read_pairs(write(tmp_path, [json.dumps(row)]))[0]
    assert (rec["prompt"], rec["chosen"], rec["rejected"]) == ("User: Hi?", "Hello!", "Go away.")


def test_content_id_is_stable_and_content_based(tmp_path):
    row = {"prompt": "p", "chosen": "a", "rejected": "b"}
    a = read_pairs(write(tmp_path, [json.dumps(row)]))[0]["id"]
    assert a == content_id("p", "a", "b") and a.startswith("h-")
    row2 = dict(row, chosen="c")
    assert read_pairs(write(tmp_path, [json.dumps(row2)]))[0]["id"] != a


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(['{"prompt": "p", "chosen": "a", "rejected": "b"}', "{not json"],
                     "pairs.jsonl line 2: invalid JSON", id="malformed-json"),
        pytest.param(['{"prompt": "p", "chosen": "a"}'], "line 1: missing field 'rejected'", id="missing-field"),
        pytest.param(['{"prompt": "p", "chosen": "  ", "rejected": "b"}'], "line 1: field 'chosen' is empty",
                     id="empty-field"),
        pytest.param(['{"prompt": 3, "chosen": "a", "rejected": "b"}'], "line 1: field 'prompt' must be a string",
                     id="wrong-type"),
        pytest.param(['{"prompt": "p", "chosen": 5, "rejected": "b"}'], "line 1: field 'chosen' must be a string",
                     id="wrong-type-response"),
        pytest.param(['[1, 2]'], "line 1: expected a JSON object", id="not-object"),
        pytest.param(['{"id": "x", "prompt": "p", "chosen": "a", "rejected": "b"}',
                      '{"id": "x", "prompt": "q", "chosen": "a", "rejected": "b"}'],
                     "line 2: duplicate id 'x' (first seen on line 1)", id="duplicate-id"),
        pytest.param(['{"chosen": "Human: hi", "rejected": "Bot: no"}'], "line 1: no 'prompt' field",
                     id="hh-without-assistant"),
        pytest.param(['{"chosen": [{"role": "user"}], "rejected": []}'], "line 1: field 'chosen' message 0",
                     id="bad-chat-message"),
        pytest.param([""], "no records", id="empty-file"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, lines, expected):
    with pytest.raises(DataError) as err:
        read_pairs(write(tmp_path, lines))
    assert expected in str(err.value)
    assert "pairs.jsonl" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "nope.jsonl")


def test_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"

    def rows():
        yield {"id": "1", "prompt": "p", "chosen": "a", "rejected": "b"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(rows(), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_private_keys_not_written(tmp_path):
    rows = read_pairs(FIXTURES / "tiny.jsonl")
    assert "_line" in rows[0]
    write_records(rows, tmp_path / "o.jsonl")
    assert "_line" not in read_jsonl(tmp_path / "o.jsonl")[0]
