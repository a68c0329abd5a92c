"""marsctl active simulate LABELED --out DIR: how many labels a query strategy saves, simulated on real labels."""

from __future__ import annotations

import typer

from marsctl.cli.common import bounded, comma_list, handle_errors, param_option
from marsctl.cli.inputs import format_option, pairs_argument, split_option

app = typer.Typer(help="Labeling budgets: simulate query strategies on a labeled set.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("simulate")
@handle_errors
def simulate_cmd(
    pairs: str = pairs_argument("Labeled preference pairs (their labels are hidden, then revealed as queried)", ...),
    fmt: str = format_option(),
    split: str = split_option(),
    seed_labels: int = bounded(50, "--seed-labels", low=2, help="Labels to start from (a random sample)."),
    per_round: int = bounded(50, "--per-round", low=1, help="Pairs each strategy queries a round."),
    rounds: int = bounded(8, "--rounds", low=1, help="Query rounds."),
    strategies: str = typer.Option("random,margin,diverse", "--strategies",
                                   help="Comma-separated query strategies (random is the reference)."),
    seeds: int = bounded(5, "--seeds", low=1, high=1000, help="Seeds (each: its own labeled seed and training)."),
    test_frac: float = typer.Option(0.3, "--test-frac", help="Share of pairs held out (grouped by prompt)."),
    split_seed: int = bounded(0, "--split-seed", low=0, help="Seed of the fixed test split."),
    head: str = typer.Option("mlp", "--head", help="Reward head retrained every round."),
    head_param: list[str] = param_option("head", short=True),
    out: str = typer.Option(..., "--out", help="Output directory: report.json, table.md, curves.png."),
) -> None:
    """Hide the labels, start from a labeled seed, query --per-round pairs a round by each strategy, reveal them,
    retrain and evaluate on a fixed prompt-grouped test split; learning curves with 95% CIs over seeds, area
    under the curve vs random (paired), and the labels needed to reach random's final accuracy."""
    import shlex
    import sys

    from marsctl import ui
    from marsctl.active import ActiveConfig, check_config, simulate
    from marsctl.activereport import write_outputs
    from marsctl.cli.inputs import read_input
    from marsctl.outputs import check_run_dir
    from marsctl.params import check_interval

    check_interval(test_frac, "test_frac", "active", low=0, high=1, closed="neither")
    config = ActiveConfig(seed_labels=seed_labels, per_round=per_round, rounds=rounds,
                          strategies=comma_list(strategies), seeds=seeds, test_frac=test_frac, split_seed=split_seed,
                          head=head, head_params=list(head_param or []))
    check_config(config, 10**12)  # the flags alone; the pool's size is checked once the pairs are read
    check_run_dir(out, [pairs], marker="report.json")
    records, name = read_input(pairs, format=fmt, split=split)
    sim = simulate(records, config, name=name)
    command = "marsctl active simulate " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    summary = write_outputs(sim, out, f"{name}: {head} head, {seeds} seeds", command)
    for st, row in summary["strategies"].items():
        d = row.get("auc_vs_random")
        ci = "" if d is None else f" [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
        vs = "" if d is None or st == "random" else f", vs random {d['mean']:+.2f}{ci}"
        ui.info(f"{st}: accuracy {100 * row['accuracy'][0]:.1f} → {100 * row['accuracy'][-1]:.1f}% over "
                f"{summary['labels'][0]}→{summary['labels'][-1]} labels, AUC {row['auc']['mean']:.2f}{vs}")
    ui.info(f"verdict: {summary['verdict']}; wrote {out}/report.json, table.md, curves.png")
