"""Users' data as it already is: every file format and row shape read, written back, converted (issue #11).

Rows are real (fixtures/formats/ is cut from ../shared/data by scripts/make_format_fixtures.py, in the published
layouts); files in the other formats are written from them into tmp_path with pyarrow and datasets.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.errors import ConfigError, DataError
from marsctl.records import read_pairs, write_records

FORMATS = FIXTURES / "formats"
TINY = FIXTURES / "tiny.jsonl"


def texts(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ shapes
def test_trl_standard():
    rows = read_pairs(TINY)
    assert rows[0]["prompt"] == read_jsonl(TINY)[0]["prompt"] and len(rows) == 40


def test_trl_implicit_prompt_is_the_shared_start():
    raw = read_jsonl(FORMATS / "trl_implicit.jsonl")
    rows = read_pairs(FORMATS / "trl_implicit.jsonl")
    for got, want in zip(rows, raw, strict=True):
        assert got["prompt"] + got["chosen"] == want["chosen"] and got["prompt"] + got["rejected"] == want["rejected"]
        assert got["chosen"] != got["rejected"] and got["prompt"].strip()


def test_trl_conversational_explicit_and_implicit_prompt():
    explicit = read_pairs(FORMATS / "trl_chat_explicit.jsonl")
    raw = read_jsonl(FORMATS / "trl_chat_explicit.jsonl")
    assert explicit[0]["prompt"] == "User: " + raw[0]["prompt"][0]["content"]
    assert explicit[0]["chosen"] == raw[0]["chosen"][0]["content"]
    implicit = read_pairs(FIXTURES / "shape_chat.jsonl")
    raw = read_jsonl(FIXTURES / "shape_chat.jsonl")
    assert implicit[0]["prompt"] == "User: " + raw[0]["chosen"][0]["content"]
    assert implicit[0]["rejected"] == raw[0]["rejected"][1]["content"]


def test_anthropic_hh():
    rows = read_pairs(FIXTURES / "shape_hh_raw.jsonl")
    assert all(r["prompt"].endswith("\n\nAssistant:") for r in rows)


def test_openai_preference():
    raw = read_jsonl(FORMATS / "openai.jsonl")
    rows = read_pairs(FORMATS / "openai.jsonl")
    assert rows[0]["prompt"] == "User: " + raw[0]["input"]["messages"][0]["content"]
    assert rows[0]["chosen"] == raw[0]["preferred_output"][0]["content"]
    assert rows[0]["rejected"] == raw[0]["non_preferred_output"][0]["content"]
    assert "input" not in rows[0] and "preferred_output" not in rows[0]  # read into prompt/chosen/rejected


def test_ultrafeedback_keeps_its_scores():
    raw = read_jsonl(FORMATS / "ultrafeedback.jsonl")
    rows = read_pairs(FORMATS / "ultrafeedback.jsonl")
    assert rows[0]["prompt"] == "User: " + raw[0]["prompt"]
    assert rows[0]["chosen"] == raw[0]["chosen"][-1]["content"]
    assert (rows[0]["score_chosen"], rows[0]["score_rejected"]) == (8.0, 3.0)
    assert rows[0]["prompt_id"] == raw[0]["prompt_id"]


def test_rewardbench_v1():
    rows = read_pairs(FORMATS / "rewardbench.jsonl")
    assert rows[0]["id"] == "0" and rows[0]["subset"].startswith("llmbar-") and rows[0]["chosen_model"] == "unknown"


def test_rewardbench2_expands_into_pairs_sharing_group_id():
    raw = read_jsonl(FORMATS / "rewardbench2.jsonl")
    rows = read_pairs(FORMATS / "rewardbench2.jsonl")
    assert len(rows) == sum(len(r["chosen"]) * len(r["rejected"]) for r in raw) == 9
    first = [r for r in rows if r["group_id"] == raw[0]["id"]]
    assert [r["rejected"] for r in first] == raw[0]["rejected"]
    assert {r["chosen"] for r in first} == set(raw[0]["chosen"])
    assert all(r["subset"] == "Focus" and r["num_correct"] == 1 for r in rows)
    assert len({r["id"] for r in rows}) == 9


def test_pku_saferlhf_better_or_safer():
    raw = read_jsonl(FORMATS / "pku_saferlhf.jsonl")
    better = read_pairs(FORMATS / "pku_saferlhf.jsonl")
    safer = read_pairs(FORMATS / "pku_saferlhf.jsonl", format="pku-safer")
    for b, s, r in zip(better, safer, raw, strict=True):
        assert b["chosen"] == r[f"response_{r['better_response_id']}"]
        assert s["chosen"] == r[f"response_{r['safer_response_id']}"]
        assert b["prompt"] == r["prompt"] and b["is_response_0_safe"] == r["is_response_0_safe"]
    assert [b["chosen"] != s["chosen"] for b, s in zip(better, safer, strict=True)] == [True, True, False, False, False]


def test_one_line_says_shape_and_rows():
    proc = run_cli("convert", str(FORMATS / "rewardbench2.jsonl"), "--to", "trl", "-o", os.devnull, check=True)
    assert f"read 9 pairs from 3 rows of {FORMATS / 'rewardbench2.jsonl'} (shape: rewardbench2)" in proc.stderr
    proc = run_cli("convert", str(FORMATS / "pku_saferlhf.jsonl"), "--to", "trl", "--format", "pku-safer",
                   "-o", os.devnull, check=True)
    assert "(shape: pku-safer)" in proc.stderr


def test_unknown_row_lists_the_shapes(tmp_path):
    src = write_jsonl([{"question": "q", "answer": "a"}], tmp_path / "odd.jsonl")
    proc = run_cli("convert", str(src), "--to", "trl", "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error, hint = proc.stderr.splitlines()
    assert error.startswith(f"Error: {src} line 1: no preference shape marsctl knows (fields: answer, question")
    for name in ("trl:", "trl-chat:", "hh:", "openai:", "ultrafeedback:", "rewardbench:", "rewardbench2:", "pku:"):
        assert name in hint
    assert not (tmp_path / "out.jsonl").exists()


def test_format_forces_a_shape_and_names_the_missing_field(tmp_path):
    with pytest.raises(DataError, match="line 1: missing field 'input' \\(the openai shape needs input"):
        read_pairs(TINY, format="openai")
    with pytest.raises(ConfigError, match="--format 'parquet' is not a shape"):
        read_pairs(TINY, format="parquet")


# --------------------------------------------------------------------------------------------- formats
@pytest.fixture(scope="module")
def tiny_rows() -> list[dict]:
    return read_jsonl(TINY)


def _write_parquet(rows: list[dict], path: Path, **kw) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(rows[0])
    pq.write_table(pa.table({k: [r.get(k) for r in rows] for k in keys}), path, **kw)
    return path


def test_parquet(tmp_path, tiny_rows):
    src = _write_parquet(tiny_rows, tmp_path / "pairs.parquet")
    assert texts(read_pairs(src)) == texts(read_pairs(TINY))


def test_parquet_streams_in_record_batches(tmp_path, tiny_rows):
    from marsctl import formats

    many = [dict(r, id=f"{r['id']}-{k}") for k in range(60) for r in tiny_rows]  # 2,400 rows
    src = _write_parquet(many, tmp_path / "many.parquet", row_group_size=500)
    batches = list(formats._parquet_tables(src))
    assert len(batches) > 2 and max(b.num_rows for b in batches) <= formats._BATCH
    rows = read_pairs(src)
    assert len(rows) == 2400 and rows[-1]["_line"] == 2400


def test_parquet_errors_name_row_and_field(tmp_path, tiny_rows):
    rows = [dict(r) for r in tiny_rows[:3]]
    rows[1]["rejected"] = None
    with pytest.raises(DataError, match=r"bad.parquet row 2: missing field 'rejected'"):
        read_pairs(_write_parquet(rows, tmp_path / "bad.parquet"))
    rows = [dict(r, score=1.0) for r in tiny_rows[:3]]
    rows[2]["score"] = float("nan")
    with pytest.raises(DataError, match=r"nan.parquet row 3: field 'score' is nan"):
        read_pairs(_write_parquet(rows, tmp_path / "nan.parquet"))


def test_csv(tmp_path, tiny_rows):
    import csv

    src = tmp_path / "pairs.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "prompt", "chosen", "rejected", "subset"], extrasaction="ignore")
        w.writeheader()
        w.writerows(tiny_rows)
    rows = read_pairs(src)
    assert texts(rows) == texts(read_pairs(TINY)) and rows[0]["subset"] == tiny_rows[0]["subset"]


def test_json_array(tmp_path, tiny_rows):
    src = tmp_path / "pairs.json"
    src.write_text(json.dumps(tiny_rows), encoding="utf-8")
    assert texts(read_pairs(src)) == texts(read_pairs(TINY))


@pytest.mark.parametrize("kind", ["gz", "zst", "xz"])
def test_compressed_jsonl(tmp_path, kind):
    import lzma

    import zstandard

    data = TINY.read_bytes()
    packed = {"gz": gzip.compress, "xz": lzma.compress, "zst": zstandard.ZstdCompressor().compress}[kind](data)
    src = tmp_path / f"pairs.jsonl.{kind}"
    src.write_bytes(packed)
    assert texts(read_pairs(src)) == texts(read_pairs(TINY))


def test_save_to_disk_dataset_and_dataset_dict(tmp_path, tiny_rows):
    import datasets

    ds = datasets.Dataset.from_list(tiny_rows)
    ds.save_to_disk(str(tmp_path / "one"))
    assert texts(read_pairs(tmp_path / "one")) == texts(read_pairs(TINY))
    datasets.DatasetDict({"train": ds.select(range(30)), "test": ds.select(range(30, 40))}).save_to_disk(
        str(tmp_path / "two"))
    test = read_pairs(tmp_path / "two", split="test")
    assert texts(test) == texts(read_pairs(TINY))[30:]
    with pytest.raises(ConfigError, match="holds the splits train, test; name one with --split"):
        read_pairs(tmp_path / "two")
    proc = run_cli("convert", str(tmp_path / "two"), "--split", "train", "--to", "trl", "-o",
                   str(tmp_path / "out.jsonl"), check=True)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 30 and "(shape: trl)" in proc.stderr


CACHE_HUB_DATASET = """
import os, pathlib, sys
home, src, repo = sys.argv[1:]
os.environ["HF_HOME"] = home
from datasets.packaged_modules.parquet.parquet import Parquet
owner, name = repo.split("/")
b = Parquet(dataset_name=name, config_name="default", config_id="default", data_files={"train": src}, hash="0")
b.download_and_prepare()
root = pathlib.Path(b._cache_dir_root)
(root / name).rename(root / f"{owner}___{name}")
"""


def _cache_hub_dataset(home: Path, rows: list[dict], repo: str) -> None:
    """Put a dataset into a temporary HF_HOME's datasets cache as `load_dataset(repo)` leaves it (offline test)."""
    home.mkdir()
    src = _write_parquet(rows, home / "train.parquet")
    proc = subprocess.run([sys.executable, "-c", CACHE_HUB_DATASET, str(home), str(src), repo], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    src.unlink()


def test_dataset_in_the_local_hub_cache_by_name_offline(tmp_path, tiny_rows):
    home = tmp_path / "hf"
    _cache_hub_dataset(home, tiny_rows[:12], "acme/prefs")
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = run_cli("convert", "acme/prefs", "--to", "trl", "-o", str(tmp_path / "out.jsonl"), env=env, check=True)
    assert [r["prompt"] for r in read_jsonl(tmp_path / "out.jsonl")] == [r["prompt"] for r in tiny_rows[:12]]
    assert "read 12 pairs from acme/prefs (shape: trl)" in proc.stderr
    proc = run_cli("convert", "acme/absent", "--to", "trl", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: acme/absent: no such file, and no dataset of that name in the local hub")


# --------------------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("ext", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".csv"])
def test_output_honours_the_extension(tmp_path, ext):
    rows = read_pairs(TINY)
    out = tmp_path / f"out{ext}"
    write_records(rows, out)
    head = out.read_bytes()[:4]
    assert {".jsonl": b'{"id', ".jsonl.gz": b"\x1f\x8b\x08\x00", ".jsonl.zst": b"\x28\xb5\x2f\xfd",
            ".parquet": b"PAR1", ".csv": b"id,p"}[ext] == head
    back = read_pairs(out)
    assert texts(back) == texts(rows) and [r["id"] for r in back] == [r["id"] for r in rows]
    assert back[0]["subset"] == rows[0]["subset"]


def test_unknown_extension_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out.txt"
    proc = run_cli("select", str(TINY), "--budget", "3", "-o", str(out))  # unscored input: would fail later
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.startswith(f"Error: -o {out}: marsctl does not write '.txt' files")
    assert "Hint: name the output with one of: .jsonl" in proc.stderr


def test_chat_rows_are_written_back_as_messages(tmp_path):
    for name in ("shape_chat.jsonl", "formats/ultrafeedback.jsonl", "formats/openai.jsonl"):
        raw = read_jsonl(FIXTURES / name)
        write_records(read_pairs(FIXTURES / name), tmp_path / "out.jsonl")
        back = read_jsonl(tmp_path / "out.jsonl")
        for got, want in zip(back, raw, strict=True):
            assert {k: got[k] for k in want} == want  # the row's own layout and messages, unchanged
    rows = read_pairs(FORMATS / "trl_chat_explicit.jsonl")
    rows[0]["chosen"] = "A rewritten answer."  # a synthetic pair: the changed side becomes one message
    write_records(rows, tmp_path / "out.parquet")
    import pyarrow.parquet as pq

    first = pq.read_table(tmp_path / "out.parquet").to_pylist()[0]
    assert first["chosen"] == [{"role": "assistant", "content": "A rewritten answer."}]
    assert first["prompt"] == read_jsonl(FORMATS / "trl_chat_explicit.jsonl")[0]["prompt"]


# -------------------------------------------------------------------------------------- score, convert
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("formats") / "model"
    run_cli("train", str(TINY), "-o", str(out), "--head", "linear", "--epochs", "2",
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


def test_score_never_clobbers_the_users_scores(model_dir, tmp_path):
    src = FORMATS / "ultrafeedback.jsonl"
    out = tmp_path / "scored.jsonl"
    proc = run_cli("score", str(src), "-m", str(model_dir), "-o", str(out), check=True)
    rows = read_jsonl(out)
    assert all((r["input_score_chosen"], r["input_score_rejected"]) == (8.0, 3.0) for r in rows)
    assert all(r["score_chosen"] != 8.0 and abs(r["score_chosen"] - r["score_rejected"] - r["pred_margin"]) < 1e-5
               for r in rows)
    assert proc.stderr.count("kept as input_score_chosen, input_score_rejected") == 1
    assert isinstance(rows[0]["chosen"], list) and isinstance(rows[0]["prompt"], str)  # UltraFeedback's layout
    again = run_cli("score", str(out), "-m", str(model_dir), "-o", str(tmp_path / "again.jsonl"), check=True)
    assert "re-scoring rows that marsctl scored before" in again.stderr and "kept as" not in again.stderr
    assert read_jsonl(tmp_path / "again.jsonl")[0]["input_score_chosen"] == 8.0


@pytest.mark.parametrize("target", ["trl", "trl-chat", "openai", "rewardbench"])
def test_convert_to_each_layout_reads_back(tmp_path, target):
    out = tmp_path / "out.jsonl"
    run_cli("convert", str(FIXTURES / "hh_test.jsonl"), "--to", target, "-o", str(out), check=True)
    rows = read_jsonl(out)
    shape = {"trl": "trl", "trl-chat": "trl-chat", "openai": "openai", "rewardbench": "rewardbench"}[target]
    proc = run_cli("convert", str(out), "--to", "trl", "-o", os.devnull, check=True)
    assert f"(shape: {shape})" in proc.stderr
    original = read_pairs(FIXTURES / "hh_test.jsonl")
    if target == "openai":
        assert set(rows[0]) == {"input", "preferred_output", "non_preferred_output"}
        assert [m["role"] for m in rows[0]["input"]["messages"]][:2] == ["user", "assistant"]
        assert rows[0]["preferred_output"] == [{"role": "assistant", "content": original[0]["chosen"].strip()}]
    elif target == "trl-chat":
        first_turn = original[0]["prompt"].split("\n\nHuman: ")[1].split("\n\nAssistant:")[0]
        assert rows[0]["prompt"][0] == {"role": "user", "content": first_turn}
        assert rows[0]["chosen"] == [{"role": "assistant", "content": original[0]["chosen"].strip()}]
    elif target == "rewardbench":
        assert list(rows[0]) == ["prompt", "chosen", "chosen_model", "rejected", "rejected_model", "subset", "id"]
    else:
        assert texts(read_pairs(out)) == texts(original)


def test_convert_synthetic_rows_to_openai(model_dir, tmp_path):
    scored = run_cli("score", str(TINY), "-m", str(model_dir), check=True).stdout
    sel = run_cli("select", "-", "--budget", "4", input=scored, check=True).stdout
    syn = run_cli("augment", "-", "--backend", "eda", input=sel, check=True).stdout
    assert json.loads(syn.splitlines()[0])["source"] == "synthetic"
    proc = run_cli("convert", "-", "--to", "openai", input=syn, check=True)
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(rows) == 4 and all(set(r) == {"input", "preferred_output", "non_preferred_output"} for r in rows)


def test_help_does_not_import_datasets():
    code = "import sys, marsctl.cli.app; print(sorted(m for m in ('datasets', 'pyarrow', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
