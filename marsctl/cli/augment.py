"""marsctl augment SELECTED --backend NAME."""

from __future__ import annotations

import typer

from marsctl.cli.common import (
    alias,
    bounded,
    config_option,
    handle_errors,
    merged_params,
    output_option,
    param_option,
    seed_option,
    semantic_option,
    tries_option,
)
from marsctl.cli.inputs import format_option, input_file, split_option
from marsctl.params import MAX_ROUNDS


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.config import RefineConfig

    @app.command("augment")
    @handle_errors
    def augment_cmd(
        selected: str = typer.Argument("-", help="Selected pairs (from 'marsctl select') or '-'."),
        fmt: str = format_option(),
        split: str = split_option(),
        backend: str = config_option(RefineConfig, "backend"),
        seed: int = seed_option("Seed for variants and draws."),
        round_: int = bounded(1, "--round", low=0, high=MAX_ROUNDS, help="Round number written into provenance."),
        model: str = typer.Option(None, "-m", "--model",
                                  help="Model dir that scores each pool (needed for won selections)."),
        semantic: bool = semantic_option(),
        tries: int = tries_option(),
        output: str = output_option(),
        param: list[str] = param_option("augmenter", short=True),
        param_alias: list[str] = alias("--param"),
    ) -> None:
        """Emit synthetic pairs (labels kept, provenance added) for rows with budget > 0."""
        from marsctl import augmentation, ui
        from marsctl.checks import check_selected
        from marsctl.outputs import check_file_output
        from marsctl.records import iter_pairs, record_writer

        check_file_output(output, [selected, model], records=True)
        with input_file(selected, format=fmt, split=split) as (src, name):
            # Pass 1 checks every row and keeps only what the check reads; pass 2 streams the rows to augment.
            keep = ("budget", "selection", "_line")
            counts, _ = check_selected([{k: r[k] for k in keep if k in r} for r in iter_pairs(src, name=name,
                                        announce=True)], name, model)  # before the plugin loads or prints anything
            aug = augmentation.make_augmenter(backend, merged_params(param, param_alias), seed=seed)
            todo = sum(1 for b in counts if b > 0)
            n_rows = 0
            with ui.progress(f"augment ({backend})", todo, "pairs") as advance, record_writer(output) as write:
                rows_in = (r for r in iter_pairs(src, name=name) if r.get("budget", 0) > 0 or aug.reads_all_pairs)
                stats: dict = {}
                for rows, so_far in augmentation.iter_augment(rows_in, aug, round=round_, model=model, name=name,
                                                              progress=advance,
                                                              semantic_tries=tries if semantic else 0):
                    for row in rows:
                        write(row)
                    n_rows += len(rows)
                    stats = so_far
        if "semantic" in stats:
            s = stats["semantic"]
            ui.info(f"semantic refinement: {s['low_contrast']} low-contrast pairs (d < {s['threshold']:.4f}); "
                    f"rewrote rejected in {s['refined_rejected']}, chosen in {s['refined_chosen']}, "
                    f"kept {s['kept']}; mean d {s['mean_d_before']:.4f} → {s['mean_d_after']:.4f}")
        extra = {k: v for k, v in stats.items() if k.startswith(("filter_", "cache_", "generate_"))}
        if extra:
            ui.info("augment stats: " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
        ui.info(f"augment {backend}: {n_rows} synthetic pairs from {stats['pairs']} selected pairs"
                + (f"; {stats['cycled_rows']} rows re-drawn from exhausted pools" if stats["cycled_rows"] else "")
                + (f"; {stats['short_pools']} pools smaller than their budget" if stats["short_pools"] else ""))
