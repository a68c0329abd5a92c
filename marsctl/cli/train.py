"""marsctl train PAIRS -o MODEL_DIR."""

from __future__ import annotations

import typer

from marsctl.cli.common import alias, bounded, handle_errors, merged_params, param_option, seed_option
from marsctl.cli.inputs import format_option, pairs_argument, read_input, split_option
from marsctl.params import MAX_EPOCHS


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("train")
    @handle_errors
    def train_cmd(
        pairs: str = pairs_argument("Preference pairs"),
        fmt: str = format_option(),
        split: str = split_option(),
        output: str = typer.Option(..., "-o", "--output", help="Model directory to write."),
        head: str = typer.Option(None, "--head", help="Reward head plugin (default mlp, or --init's)."),
        epochs: int = bounded(None, "--epochs", low=0, high=MAX_EPOCHS, help="Epochs (default: the head's)."),
        seed: int = seed_option("Seed for initialisation and shuffling."),
        init: str = typer.Option(None, "--init", help="Continue training from this model directory."),
        param: list[str] = param_option("head", short=True),
        param_alias: list[str] = alias("--param"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace an existing marsctl model directory at -o (only one that "
                                            "holds nothing but marsctl's files)."),
    ) -> None:
        """Train a Bradley–Terry reward head and save it as a model directory."""
        from marsctl import steps, ui
        from marsctl.embed import encoder_stats
        from marsctl.outputs import check_model_dir_output

        check_model_dir_output(output, [pairs, init], overwrite=overwrite)
        records, name = read_input(pairs, format=fmt, split=split)
        model = steps.train(records, head=head, params=merged_params(param, param_alias), epochs=epochs, seed=seed,
                            init=init, name=name)
        if model.is_main_process():
            model.save(output, overwrite=overwrite)
            m = model.manifest_
            emb = encoder_stats()
            ui.info(f"trained {model.name} on {len(records)} pairs from {name}: epochs={m.get('epochs')} "
                    f"final loss={m.get('final_loss')} → {output} "
                    f"(embedded {emb['misses']} new texts, {emb['hits']} from cache)")
