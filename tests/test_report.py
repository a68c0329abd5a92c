"""report: every table from small known inputs, with the expected lines written out by hand."""

from __future__ import annotations

from marsctl import report

SUMMARY = {
    "run_dir": "runs/x",
    "heldout": {"path": "test.jsonl"},
    "length_baseline": {"longer": 0.6, "shorter": 0.35},
    "rounds": [
        {"round": 0, "train_size": 40, "n_synthetic": 0, "eval_accuracy": 0.625, "eval_accuracy_ci95": [0.5, 0.75],
         "eval_roc_auc": 0.7, "eval_margin_snr": None, "train_curvature_weight": 0.2, "selection_ess": None,
         "selection_share_negative": None},
        {"round": 1, "train_size": 60, "n_synthetic": 20, "eval_accuracy": 0.6875,
         "eval_accuracy_ci95": [0.5, 0.875], "eval_roc_auc": 0.71234, "eval_margin_snr": 1.5,
         "train_curvature_weight": 0.19, "selection_ess": 12.34, "selection_share_negative": 0.25},
    ],
}

REPORT = {
    "config": {"strategies": ["none", "mars"], "seeds": 2, "protocols": ["steps"], "test_frac": 0.3, "n_boot": 100,
               "refine": {"head": "mlp", "backend": "eda", "rounds": 1, "budget": None, "cap": 25}},
    "protocols": {"steps": {
        "none": {"accuracy_mean": 0.6, "accuracy_std": 0.05, "accuracy_ci95": [0.55, 0.65], "seeds": 2,
                 "length_longer": 0.7, "length_shorter": 0.3, "train_curvature_weight": 0.2},
        "mars": {"accuracy_mean": 0.625, "accuracy_std": 0.025, "accuracy_ci95": [0.5, 0.75], "seeds": 2,
                 "length_longer": 0.7, "length_shorter": 0.3,
                 "vs_none": {"mean": 0.03, "ci95": [-0.05, 0.1], "wins": 2, "losses": 0, "ties": 0},
                 "diagnostics": {"ess": 10.5, "max_budget": 3.0, "pairs_selected": 8.0, "share_negative_margin": 0.125,
                                 "p_chosen_longer_selected": 0.5, "test_p_chosen_longer": 0.625,
                                 "novelty_corr": None, "guard_fallbacks": 0},
                 "train_curvature_weight": 0.1875},
    }},
}


def test_markdown_table():
    assert report.markdown_table(["a", "b"], [["1", ""], ["x", "y"]]) == [
        "| a | b |", "|---|---|", "| 1 |  |", "| x | y |"]


def test_summary_markdown():
    assert report.summary_markdown(SUMMARY) == (
        "| round | train pairs | synthetic | held-out acc | 95% CI | AUC | SNR | mean σ'(Δ) train | ESS "
        "| budget on Δ<0 |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| 0 | 40 | 0 | 0.6250 | [0.500, 0.750] | 0.7000 |  | 0.2000 |  |  |\n"
        "| 1 | 60 | 20 | 0.6875 | [0.500, 0.875] | 0.7123 | 1.5000 | 0.1900 | 12.3 | 0.250 |\n"
        "\n"
        "Baseline on the same held-out rows: pick the longer response 0.6000, the shorter 0.3500.\n")


def test_summary_markdown_without_heldout_has_no_baseline_line():
    rows = [{**r, "eval_accuracy": None, "eval_accuracy_ci95": None, "eval_roc_auc": None} for r in SUMMARY["rounds"]]
    text = report.summary_markdown({**SUMMARY, "rounds": rows, "length_baseline": None})
    assert text.splitlines()[2] == "| 0 | 40 | 0 |  |  |  |  | 0.2000 |  |  |"
    assert "Baseline" not in text and text.endswith("|\n")


def test_write_summary(tmp_path):
    report.write_summary(SUMMARY, tmp_path / "summary.md")
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == report.summary_markdown(SUMMARY)


def test_compare_markdown():
    assert report.compare_markdown(REPORT, "marsctl compare x.jsonl").split("\n") == [
        "# compare: none, mars",
        "",
        "```",
        "marsctl compare x.jsonl",
        "```",
        "",
        "2 seeds; head mlp; backend eda; rounds 1; budget as many as training pairs per round; cap 25 rows per pair. "
        "Δ are paired differences in accuracy points with a 95% CI from a bootstrap over seeds and test pairs; "
        "wins/losses count seeds.",
        "",
        "## matched optimiser steps (augmented rounds train fewer epochs)",
        "",
        "| strategy | accuracy % (mean ± std) | 95% CI | Δ vs uniform [CI] (wins/losses) | Δ vs none [CI] (wins/losses) "
        "| length baseline (longer) |",
        "|---|---|---|---|---|---|",
        "| none | 60.0 ± 5.0 | [55.0, 65.0] |  |  | 70.0 |",
        "| mars | 62.5 ± 2.5 | [50.0, 75.0] |  | +3.0 [-5.0, +10.0] (2/0) | 70.0 |",
        "",
        "| strategy | ESS | max b_i | pairs with b_i>0 | budget on Δ<0 | P(chosen longer) selected "
        "| P(chosen longer) test | mean σ'(Δ) train | novelty corr | guard fallbacks |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| mars | 10.5 | 3.0 | 8.0 | 0.125 | 0.500 | 0.625 | 0.1875 |  | 0 |",
        "",
        "Length baseline on the same test rows: pick the longer response 70.0 %, the shorter 30.0 %.",
        "",
    ]


def test_compare_markdown_without_command_and_with_a_budget():
    cfg = {**REPORT["config"], "refine": {**REPORT["config"]["refine"], "budget": 500}}
    lines = report.compare_markdown({**REPORT, "config": cfg}).split("\n")
    assert lines[:2] == ["# compare: none, mars", ""] and "```" not in lines
    assert lines[2].startswith("2 seeds; head mlp; backend eda; rounds 1; budget 500 per round; cap 25 rows per pair.")


def test_mean_std_markdown():
    rows = [{"dataset": "a", "head": h, "epochs": e, "accuracy": acc}
            for h, e, acc in [("mlp", 1, 0.5), ("mlp", 1, 0.7), ("mlp", 2, 0.6), ("linear", 1, 0.25),
                              ("linear", 1, 0.75), ("linear", 2, 0.8), ("other", 1, 0.0)]]
    table = report.mean_std_markdown(rows, {"dataset": ["a"], "head": ["mlp", "linear"]}, "epochs", [1, 2],
                                     ["1 epoch", "2 epochs"])
    assert table == ("| dataset | head | 1 epoch | 2 epochs |\n"
                     "|---|---|---|---|\n"
                     "| a | mlp | 0.600 ± 0.100 | 0.600 ± 0.000 |\n"
                     "| a | linear | 0.500 ± 0.250 | 0.800 ± 0.000 |\n")


def test_rich_tables_on_stderr(capsys):
    report.print_summary(SUMMARY)
    report.print_compare(REPORT)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "refine summary (runs/x; held-out: test.jsonl)" in err
    assert "length baseline on the same held-out rows: longer 0.6000, shorter 0.3500" in err
    assert "compare, steps protocol" in err and "+3.0 [-5.0, +10.0] (2/0)" in err and "62.5 ± 2.5" in err
