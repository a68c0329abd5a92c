"""plots: every figure of small real refine and compare runs exists, is a PNG, and fixes what issue #12 lists."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, read_jsonl, run_cli

from marsctl import plots, report
from marsctl.config import RefineConfig
from marsctl.records import read_pairs
from marsctl.rundir import compare_results
from marsctl.runs import RefineRun

REFINE_PNGS = ("accuracy_by_round.png", "margins_by_round.png", "budget_vs_margin.png")
COMPARE_PNGS = ("accuracy.png", "paired_delta.png", "accuracy_by_round.png", "margins_by_round.png",
                "budget_vs_margin.png")
SAVED = ROOT / "benchmarks" / "results" / "compare" / "llmbar"


def assert_png(path: Path) -> tuple[int, int]:
    """The file is a PNG that decodes; returns its size."""
    from PIL import Image

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.width > 200 and im.height > 200, (path, im.size)
        return im.size


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """One small compare run (2 seeds, both protocols, 1 round) shared by this file's tests."""
    out = tmp_path_factory.mktemp("plots") / "cmp"
    run_cli("compare", str(FIXTURES / "tiny.jsonl"), "--seeds", "2", "--rounds", "1", "--strategies",
            "none,uniform,mars-abs", "--epochs", "2", "--budget", "20", "--out", str(out),
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


def test_refine_writes_its_figures(tmp_path):
    out = tmp_path / "r"
    cfg = RefineConfig(rounds=2, budget=20, epochs=2)
    RefineRun(read_pairs(FIXTURES / "tiny.jsonl"), out, cfg, heldout=read_pairs(FIXTURES / "tiny_test.jsonl"),
              heldout_name="tiny_test.jsonl").run()
    sizes = {name: assert_png(out / name) for name in REFINE_PNGS}
    one_round = plots._refine_budgets(out)  # one panel per round: 2 panels here
    assert len(one_round.axes) == 2
    assert sizes["budget_vs_margin.png"][0] > sizes["accuracy_by_round.png"][0] * 1.1
    assert (out / "report.html").is_file()


def test_refine_without_heldout_has_no_accuracy_figure(tmp_path):
    out = tmp_path / "r"
    RefineRun(read_pairs(FIXTURES / "tiny.jsonl"), out, RefineConfig(rounds=1, budget=20, epochs=2)).run()
    assert not (out / "accuracy_by_round.png").exists()
    assert_png(out / "margins_by_round.png")
    assert_png(out / "budget_vs_margin.png")


def test_compare_writes_every_figure(compare_dir):
    for name in COMPARE_PNGS:
        assert_png(compare_dir / name)
    assert (compare_dir / "report.html").is_file()


def _by_round_and_report(compare_dir: Path) -> tuple[dict, list[dict]]:
    rep = json.loads((compare_dir / "report.json").read_text())
    return rep, compare_results(compare_dir)


def test_round_ticks_are_integers_and_panels_share_y(compare_dir):
    rep, results = _by_round_and_report(compare_dir)
    fig = plots._compare_by_round(rep, results)
    a, b = fig.axes[:2]
    assert list(a.get_xticks()) == [0, 1]
    assert a.get_shared_y_axes().joined(a, b)
    labels = [t.get_text() for t in a.get_legend().get_texts()]
    # Equal lines are named as such (and dodged apart), so none hides another without saying so.
    assert len(labels) == 3 and all(lbl.split(" ")[0] in ("none", "uniform", "mars-abs") for lbl in labels)
    xs = [c.lines[0].get_xdata()[0] for c in a.containers]  # each strategy's round-0 point
    assert len(set(xs)) == len(xs) == 3
    assert fig.axes[0].get_title().startswith("same epochs") and fig.axes[1].get_title().startswith("matched steps")


def test_forest_plot_shows_the_paired_deltas_of_the_table(compare_dir):
    rep, _ = _by_round_and_report(compare_dir)
    fig = plots._paired_delta(rep)
    assert len(fig.axes) == 4  # (vs uniform, vs none) × (same epochs, matched steps)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    for protocol, rows in rep["protocols"].items():
        for st, r in rows.items():
            for ref in ("uniform", "none"):
                if f"vs_{ref}" in r:
                    assert report.format_paired(r[f"vs_{ref}"]) in texts, (protocol, st, ref)
    assert "matched steps: Δ accuracy vs none" in fig.axes[3].get_title()


def test_length_baseline_labels_are_the_tables_numbers(compare_dir):
    rep, results = _by_round_and_report(compare_dir)
    table = (compare_dir / "table.md").read_text()
    fig = plots._compare_accuracy(rep, results)
    for ax, protocol in zip(fig.axes, rep["protocols"], strict=True):
        longer, shorter = report.length_baseline_text(report.compare_length_baseline(rep, protocol), percent=True)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"pick longer ({longer})", f"pick shorter ({shorter})"]
        assert f"pick the longer response {longer}, the shorter {shorter}." in table


def test_margin_histograms_share_their_bins(compare_dir):
    rep, results = _by_round_and_report(compare_dir)
    fig = plots._compare_margins(rep, results)
    edges = set()
    for ax in fig.axes:
        for patch in ax.patches:
            xs = patch.get_xy()[:, 0]
            edges.add((round(float(xs.min()), 9), round(float(xs.max()), 9)))
    assert len(edges) == 1  # every histogram of every round and panel spans the same bins
    assert len(fig.axes) == 2 * 3


def test_budget_panels_show_every_seed(compare_dir):
    rep, results = _by_round_and_report(compare_dir)
    fig = plots._compare_budgets(rep, results)
    assert len(fig.axes) == 2 * 2  # protocols × (uniform, mars-abs): one panel per strategy
    n_train = sum(r["n_train"] for r in results if r["protocol"] == "epochs" and r["strategy"] == "uniform")
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == n_train  # every pair of both seeds
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["seed 0", "seed 1"]


def test_saved_compare_replots_from_its_json_only():
    rep = json.loads((SAVED / "report.json").read_text())
    pngs = plots.compare_pngs([], rep)
    assert list(pngs) == ["accuracy.png", "paired_delta.png"]  # the rest need the runs' folders
    assert all(p.startswith(b"\x89PNG") for p in pngs.values())


def test_runs_jsonl_rows_point_at_their_folders(compare_dir):
    rows = compare_results(compare_dir)
    assert len(rows) == len(read_jsonl(compare_dir / "runs.jsonl")) == 12
    assert all(Path(r["run_dir"]).is_dir() for r in rows)
