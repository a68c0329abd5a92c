"""The contrast augmenter (issue #13, RRM): cross-prompt contrast pairs from base texts only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl import augmentation, steps
from marsctl.embed import encoder_stats
from marsctl.errors import ConfigError, DataError
from marsctl.loop import Noise
from marsctl.modeldir import load_head
from marsctl.params import build_config
from marsctl.records import dumps, read_pairs
from marsctl.testing import check_augmenter
from marsctl_plugins.augmenters.contrast import ContrastAugmenter, ContrastConfig

N_BASE = 30  # pairs cut from fixtures/hh_train.jsonl (Anthropic HH-RLHF harmless-base, MIT licence)


def lines(rows: list[dict]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contrast") / "base.jsonl"
    path.write_text("".join((FIXTURES / "hh_train.jsonl").read_text(encoding="utf-8").splitlines(True)[:N_BASE]),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(base_file: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "_line"} for r in read_pairs(base_file)]


@pytest.fixture(scope="module")
def model_dir(base_file: Path, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("contrast-model") / "model"
    run_cli("train", str(base_file), "-o", str(out), "--epochs", "2", "--seed", "1",
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


@pytest.fixture(scope="module")
def selected_file(base: list[dict], model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base pairs scored and selected with a budget of 12: most rows get budget 0."""
    rows, _ = augmentation.select(steps.score(base, load_head(model_dir)), strategy="uniform", budget=12, seed=1)
    path = tmp_path_factory.mktemp("contrast-sel") / "selected.jsonl"
    path.write_text(lines(rows), encoding="utf-8")
    return path


def _check_rows(pairs: list[dict], out: list[list[dict]], weight: float, round: int) -> None:
    """Every row keeps its parent's prompt and chosen and rejects a response of a pair with another prompt text."""
    by_id = {p["id"]: p for p in pairs}
    for pair, rows in zip(pairs, out, strict=True):
        for k, row in enumerate(rows):
            source = by_id[row["contrast_of"]]
            assert row["prompt"] == pair["prompt"] and row["chosen"] == pair["chosen"]
            assert source["prompt"] != pair["prompt"]  # prompt texts differ, not only ids
            assert row["rejected"] == source[row["variant"]["rejected"]]
            assert row["rejected"] not in (pair["chosen"], pair["rejected"])
            assert row["weight"] == weight and row["source"] == "synthetic" and row["round"] == round
            assert row["parent_id"] == pair["id"] and row["id"] == f"{pair['id']}~r{round}~{k}"
            assert row["augmenter"] == {"name": "contrast", "version": "0.1.0"}
            assert row.get("subset") == pair.get("subset")
        assert len({r["rejected"] for r in rows}) == len(rows)  # distinct within a pool


# ------------------------------------------------------------------------------------------ library
def test_check_augmenter_passes(base):
    check_augmenter(ContrastAugmenter)
    check_augmenter(ContrastAugmenter, pairs=base[:6])


def test_rejected_comes_from_another_prompt_text_and_rows_carry_the_weight(base):
    pairs = [dict(p) for p in base]
    pairs[1]["prompt"] = pairs[0]["prompt"]  # same prompt text under another id: never each other's contrast
    counts = [3, 3, *([2] * (len(pairs) - 2))]
    out = ContrastAugmenter(seed=4).augment(pairs, counts, round=2)
    assert [len(rows) for rows in out] == counts
    _check_rows(pairs, out, 0.5, 2)
    assert {r["contrast_of"] for r in out[0] + out[1]}.isdisjoint({pairs[0]["id"], pairs[1]["id"]})
    assert {r["variant"]["rejected"] for rows in out for r in rows} == {"chosen", "rejected"}


def test_same_seed_same_rows_and_seeds_change_them(base):
    counts = [2] * len(base)

    def rows(seed: int, draw_seed: int | None = None) -> str:
        return lines([r for rs in ContrastAugmenter(seed=seed, draw_seed=draw_seed).augment(base, counts) for r in rs])

    assert rows(1) == rows(1)
    assert rows(1) != rows(2)  # another pool order
    assert rows(1, draw_seed=1) != rows(1, draw_seed=9)  # same pools, other draws


def test_whole_pool_pool_size_responses_and_cycling(base):
    aug = ContrastAugmenter(ContrastConfig(pool_size=7, responses="chosen", weight=2.0), seed=3)
    whole = aug.augment(base, [-1] * len(base))
    assert all(len(rows) == 7 for rows in whole)
    assert all(r["variant"]["rejected"] == "chosen" for rows in whole for r in rows)
    _check_rows(base, whole, 2.0, 0)
    aug = ContrastAugmenter(ContrastConfig(pool_size=4), seed=3)
    out = aug.augment(base[:3], [6, 0, 1])
    assert [len(rows) for rows in out] == [6, 0, 1]
    assert len({r["rejected"] for r in out[0]}) == 4  # 6 rows from a pool of 4: cycled, and counted
    assert aug.stats_["cycled_rows"] == 2 and aug.stats_["short_pools"] == 1


def test_one_prompt_is_a_data_error_and_bad_params_are_config_errors(base):
    same = [{**p, "prompt": base[0]["prompt"]} for p in base[:4]]
    with pytest.raises(DataError, match="contrast pairs need at least two prompts"):
        ContrastAugmenter().augment(same, [1, 1, 0, 0])
    assert ContrastAugmenter().augment(same, [0] * 4) == [[]] * 4  # nothing asked: nothing to refuse
    with pytest.raises(ConfigError, match="'weight' parameter of the contrast augmenter"):
        build_config(ContrastConfig, ["weight=-1"], "augmenter 'contrast'")
    with pytest.raises(ConfigError, match="'responses' parameter"):
        ContrastConfig(responses="both-ish")


def test_weight_zero_trains_as_without_the_rows_and_a_weight_changes_training(base):
    def scores(rows: list[dict]) -> list[float]:
        head = steps.train(rows, head="mlp", epochs=3, seed=5, warn_identical=False)
        return [r["pred_margin"] for r in head.score(base)]

    def contrast(weight: float) -> list[dict]:
        made = ContrastAugmenter(ContrastConfig(weight=weight), seed=1).augment(base, [1] * len(base))
        return [r for rows in made for r in rows]

    alone = scores(base)
    assert scores(base + contrast(0.0)) == pytest.approx(alone, abs=1e-6)
    assert scores(base + contrast(0.5)) != pytest.approx(alone, abs=1e-3)


def test_augmenting_and_training_embed_no_new_text(base):
    steps.train(base, head="mlp", epochs=1, seed=0)  # embeds (or finds in the cache) every base text
    before = encoder_stats()["misses"]
    made = ContrastAugmenter(seed=2).augment(base, [3] * len(base), round=1)
    steps.train(base + [r for rows in made for r in rows], head="mlp", epochs=1, seed=0)
    assert encoder_stats()["misses"] == before
    assert encoder_stats()["hits"] > 0


def test_soft_noise_weights_multiply_a_rows_own_weight():
    noise = Noise("soft", [], {"a": 0.5}, set())
    rows = [{"id": "a"}, {"id": "a~r1~0", "source": "synthetic", "parent_id": "a", "weight": 0.5},
            {"id": "a~r1~1", "source": "synthetic", "parent_id": "a"}]
    assert [r["weight"] for r in noise.training_rows(rows)] == [0.5, 0.25, 0.5]


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_file_stdin_and_any_chunking_give_the_rows_of_one_call(selected_file):
    selected = [{k: v for k, v in r.items() if k != "_line"} for r in read_pairs(selected_file)]
    assert sum(r["budget"] > 0 for r in selected) < len(selected)  # rows of budget 0 feed the pools too
    want, stats = augmentation.augment(selected, augmentation.make_augmenter("contrast", seed=2), round=1)
    assert len(want) == 12 and stats["backend"] == "contrast"
    parts = list(augmentation.iter_augment(iter(selected), augmentation.make_augmenter("contrast", seed=2), round=1, chunk=3))
    assert len(parts) == 1 and lines(parts[0][0]) == lines(want)  # read whole, whatever the chunk
    by_file = run_cli("augment", str(selected_file), "--backend", "contrast", "--seed", "2", check=True)
    by_stdin = run_cli("augment", "-", "--backend", "contrast", "--seed", "2",
                       input=selected_file.read_text(encoding="utf-8"), check=True)
    assert by_file.stdout == by_stdin.stdout == lines(want)
    budget = {r["id"]: r["budget"] for r in selected}
    assert any(budget[r["contrast_of"]] == 0 for r in want)
    _check_rows(selected, [[r for r in want if r["parent_id"] == p["id"]] for p in selected], 0.5, 1)


def test_cli_one_prompt_exits_2_with_no_output(base, tmp_path):
    rows = [{**p, "prompt": base[0]["prompt"], "budget": 1} for p in base[:5]]
    src = tmp_path / "same.jsonl"
    src.write_text(lines(rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run_cli("augment", str(src), "--backend", "contrast", "-o", str(out))
    assert proc.returncode == 2 and proc.stdout == "" and not out.exists()
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and str(src) in errors[0] and "at least two prompts" in errors[0]
    proc = run_cli("augment", "-", "--backend", "contrast", input=src.read_text(encoding="utf-8"))
    assert proc.returncode == 2 and proc.stdout == ""


def test_plugins_show_documents_the_params():
    proc = run_cli("plugins", "show", "augmenter", "contrast", check=True, env={"COLUMNS": "250"})
    # the table the user asked for is on stdout (issue 19: `| grep` and `| less` see it)
    assert "Cross-prompt contrast pairs" in proc.stdout
    for name, help_start in (("weight", "BT loss weight"), ("pool_size", "Off-prompt responses"),
                             ("responses", "Which responses")):
        assert name in proc.stdout and help_start in proc.stdout


def test_refine_with_contrast_writes_weighted_rows_and_trains_on_them(base_file, tmp_path):
    out = tmp_path / "run"
    run_cli("refine", str(base_file), "--rounds", "1", "--budget", "20", "--epochs", "2", "--seed", "3",
            "--strategy", "uniform", "--backend", "contrast", "--augment-param", "weight=0.25",
            "--eval", str(FIXTURES / "tiny_test.jsonl"), "--out", str(out), check=True)
    r1 = out / "round-1"
    synthetic = read_jsonl(r1 / "synthetic.jsonl")
    assert len(synthetic) == 20 and all(r["weight"] == 0.25 for r in synthetic)
    train = read_jsonl(r1 / "train.jsonl")
    assert [r["weight"] for r in train if r.get("source") == "synthetic"] == [0.25] * 20
    metrics = json.loads((r1 / "metrics.json").read_text())
    assert metrics["augment"]["backend"] == "contrast" and metrics["n_synthetic"] == 20
    assert 0 <= metrics["eval"]["accuracy"] <= 1
