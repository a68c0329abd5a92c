"""Streaming score, eval, select and augment (issue #10): chunked, the same results as on a list, no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

from marsctl import augmentation, steps
from marsctl.embed import EmbeddingCache, Encoder
from marsctl.metrics import evaluate
from marsctl.modeldir import load_head
from marsctl.records import dumps, read_pairs

TINY = FIXTURES / "tiny.jsonl"
TEST = FIXTURES / "tiny_test.jsonl"  # 30 real HH-RLHF pairs


def lines(rows: list[dict]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("stream") / "model"
    run_cli("train", str(TINY), "-o", str(out), "--epochs", "3", "--seed", "1",
            "-p", "encoder_precision=fp32",  # the tests swap in an fp32 Encoder (the default is bf16 where native)
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


@pytest.fixture(scope="module")
def scored(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scored") / "scored.jsonl"
    path.write_text(lines(steps.score(read_pairs(TEST), load_head(model_dir))))
    return path


def test_scores_do_not_depend_on_chunk_or_batch_size(model_dir):
    head = load_head(model_dir)
    records = read_pairs(TEST)
    want = lines(steps.score(records, head))
    for chunk, batch in ((1, None), (7, 3), (30, 1), (4096, 256), (4, 1000)):
        assert lines(steps.iter_score(records, head, batch_size=batch, chunk=chunk)) == want, (chunk, batch)


def test_scores_from_a_cache_filled_chunk_by_chunk_are_those_of_one_call(model_dir, tmp_path):
    head = load_head(model_dir)
    records = read_pairs(TEST)
    want = lines(steps.score(records, head))  # texts embedded by training, or by one call
    head.encoder = Encoder(cache=EmbeddingCache(tmp_path / "cold.sqlite"))  # a cold cache, filled 4 pairs at a time
    got = [json.loads(x) for x in lines(list(steps.iter_score(records, head, chunk=4, batch_size=3))).splitlines()]
    assert head.encoder.stats["misses"] > 0
    # Texts embedded in other company: the same within embed.BATCH_TOLERANCE, so scores written to 6
    # decimals may differ in the last one (the README's guarantees).
    for a, b in zip(got, (json.loads(x) for x in want.splitlines()), strict=True):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= 1e-4 if isinstance(b[k], float) else a[k] == b[k] for k in b), a["id"]


def test_score_cli_file_stdin_and_batch_size_agree_with_the_library(model_dir):
    want = lines(steps.score(read_pairs(TEST), load_head(model_dir)))
    from_file = run_cli("score", str(TEST), "-m", str(model_dir), check=True).stdout
    from_stdin = run_cli("score", "-", "-m", str(model_dir), "--batch-size", "2", input=TEST.read_text(),
                         check=True).stdout
    assert from_file == from_stdin == want


def test_eval_streams_scored_rows_and_gives_the_metrics_of_the_list(model_dir, tmp_path):
    rows = steps.score(read_pairs(TEST), load_head(model_dir))
    out = tmp_path / "scored.jsonl"
    proc = run_cli("eval", str(TEST), "-m", str(model_dir), "--json", "--scored", str(out), check=True)
    got = json.loads(proc.stdout[proc.stdout.index("{"):])
    want = json.loads(json.dumps(evaluate(rows)))
    assert {k: got[k] for k in want} == want
    assert out.read_text() == lines(rows)


def test_select_reads_twice_and_writes_what_select_on_the_list_writes(scored):
    rows, _ = augmentation.select(read_pairs(scored), strategy="mars-abs", budget=12, seed=3)
    from_file = run_cli("select", str(scored), "-b", "12", "--seed", "3", check=True).stdout
    from_stdin = run_cli("select", "-", "-b", "12", "--seed", "3", input=scored.read_text(), check=True).stdout
    assert from_file == from_stdin == lines(rows)
    assert sum(r["budget"] for r in read_jsonl_text(from_file)) == 12


def read_jsonl_text(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines()]


def test_augment_in_chunks_makes_the_rows_of_one_call(scored, model_dir, tmp_path):
    selected, _ = augmentation.select(read_pairs(scored), strategy="mars-abs", budget=20, seed=1)
    want, _ = augmentation.augment(selected, augmentation.make_augmenter("eda", seed=2), round=1)
    chunked = [row for rows, _ in augmentation.iter_augment((r for r in selected if r["budget"] > 0),
                                                     augmentation.make_augmenter("eda", seed=2), round=1, chunk=3)
               for row in rows]
    assert lines(chunked) == lines(want) and len(want) == 20
    path = tmp_path / "selected.jsonl"
    path.write_text(lines(selected))
    assert run_cli("augment", str(path), "--backend", "eda", "--seed", "2", check=True).stdout == lines(want)


def test_augment_in_chunks_loads_the_model_once_for_won_selections(scored, model_dir):
    selected, _ = augmentation.select(read_pairs(scored), strategy="won", budget=8, seed=1)
    head = load_head(model_dir)
    want, stats = augmentation.augment(selected, augmentation.make_augmenter("eda", seed=2), model=head)
    parts = list(augmentation.iter_augment(iter(selected), augmentation.make_augmenter("eda", seed=2), model=model_dir, chunk=5))
    assert lines([row for rows, _ in parts for row in rows]) == lines(want) and len(want) == 8
    assert len(parts) > 1 and parts[-1][1] == stats  # the stats add up over the chunks


def _bad_near_the_end(src: Path, dest: Path) -> tuple[Path, int]:
    """``src`` with its second-to-last line replaced by a row that lacks 'rejected'; the bad line's number."""
    rows = src.read_text().splitlines()
    rows[-2] = json.dumps({"prompt": "p", "chosen": "a"})
    dest.write_text("\n".join(rows) + "\n")
    return dest, len(rows) - 1


def _command(cmd: str, model_dir: Path, scored: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """The arguments of ``cmd`` (without its input) and its input, with a bad line near the end."""
    if cmd == "select":
        return ["select", "-b", "5"], _bad_near_the_end(scored, tmp_path / "bad.jsonl")[0]
    if cmd == "augment":
        selected, _ = augmentation.select(read_pairs(scored), budget=5)
        (tmp_path / "sel.jsonl").write_text(lines(selected))
        return ["augment", "--backend", "eda"], _bad_near_the_end(tmp_path / "sel.jsonl", tmp_path / "bad.jsonl")[0]
    return [cmd, "-m", str(model_dir)], _bad_near_the_end(TEST, tmp_path / "bad.jsonl")[0]


@pytest.mark.parametrize("cmd", ["score", "eval", "select", "augment"])
def test_a_bad_line_near_the_end_leaves_no_output_file(cmd, model_dir, scored, tmp_path):
    args, bad = _command(cmd, model_dir, scored, tmp_path)
    out = tmp_path / "out.jsonl"
    flag = "--scored" if cmd == "eval" else "-o"
    proc = run_cli(*args, str(bad), flag, str(out))
    n = len(bad.read_text().splitlines()) - 1
    assert proc.returncode == 2, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and f"{bad} line {n}: missing field 'rejected'" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and proc.stdout == ""


@pytest.mark.parametrize("cmd", ["score", "eval", "select", "augment"])
def test_a_bad_line_near_the_end_of_stdin_leaves_stdout_empty(cmd, model_dir, scored, tmp_path):
    args, bad = _command(cmd, model_dir, scored, tmp_path)
    proc = run_cli(*args, "-", input=bad.read_text())
    n = len(bad.read_text().splitlines()) - 1
    assert proc.returncode == 2, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and f"<stdin> line {n}: missing field 'rejected'" in errors[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("output", ["-", "/dev/stdout"])
def test_score_reads_once_and_a_bad_line_after_a_scored_chunk_leaves_no_output(output, model_dir):
    """More pairs than one chunk (scored and held before the bad line is read), each with a score field of
    its own (a warning, held back too): exit 2, one Error line, nothing else on stderr, nothing on stdout."""
    base = read_pairs(TEST)
    rows = [{**base[i % len(base)], "id": f"r{i}", "score_chosen": 8.0} for i in range(steps.SCORE_CHUNK + 50)]
    for r in rows:
        del r["_line"]
    good = lines(rows)
    proc = run_cli("score", "-", "-m", str(model_dir), "-o", output, input=good + '{"prompt": "p", "chosen": "a"}\n')
    n = len(rows) + 1
    assert proc.returncode == 2, proc.stderr
    error, hint = proc.stderr.splitlines()  # no warning, no "read N pairs" line
    assert error == f"Error: <stdin> line {n}: missing field 'rejected' (the trl shape needs chosen, rejected)"
    assert hint.startswith("Hint: marsctl reads these shapes")
    assert proc.stdout == ""
    ok = run_cli("score", "-", "-m", str(model_dir), "-o", output, input=good, check=True)
    assert [json.loads(x)["input_score_chosen"] for x in ok.stdout.splitlines()] == [8.0] * len(rows)
    assert "Warning: the input already holds score_chosen" in ok.stderr
