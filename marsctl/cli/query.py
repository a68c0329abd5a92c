"""marsctl query POOL -m MODEL -k K --strategy S: the unlabeled pairs to label next."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from marsctl.cli.common import bounded, handle_errors, output_option, seed_option
from marsctl.cli.inputs import split_option
from marsctl.params import MAX_BATCH_SIZE

DEFAULT_STRATEGY = "random"  # marsctl.query.DEFAULT_STRATEGY (not imported by --help; tests/test_query.py checks)


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("query")
    @handle_errors
    def query_cmd(
        pool: str = typer.Argument("-", help="Unlabeled pairs (prompt, response_a, response_b, id optional) in any "
                                             "format marsctl reads, or '-' for stdin."),
        split: str = split_option(),
        model: str = typer.Option(..., "-m", "--model", help="Model directory from 'marsctl train'."),
        k: int = bounded(..., "-k", "--k", low=1, help="How many pairs to label next."),
        strategy: str = typer.Option(DEFAULT_STRATEGY, "--strategy", "-s", help=(
            "random (seeded), margin (smallest |pred_margin|), uncertainty (largest ensemble spread; an ensemble "
            "head), diverse (smallest |pred_margin| spread over prompts) or fisher (D-optimal on the head's last "
            "layer); see 'marsctl plugins list'. The default was chosen by measurement (docs/labeling.md).")),
        seed: int = seed_option("Seed of the random strategy."),
        param: list[str] = typer.Option(None, "--query-param", "-p", help=(
            "Query strategy parameter key=value (repeatable); see 'marsctl plugins show query NAME'.")),
        batch_size: int = bounded(None, "--batch-size", low=1, high=MAX_BATCH_SIZE,
                                  help="Pairs per scoring batch (default: the head's)."),
        output: str = output_option(),
    ) -> None:
        """Write the K pairs to label next, with their scores, query_rank and an empty 'preferred' to fill in.

        The pool is streamed (memory is flat in its size). Fill 'preferred' with a, b or tie; the labeled
        file is read by every command that reads pairs (ties are skipped).
        """
        from marsctl import registry, ui
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.query import QueryContext, check_strategy, prompt_embedder, select, to_label
        from marsctl.records import record_writer
        from marsctl.unlabeled import is_ensemble, iter_unlabeled, score_unlabeled

        check_file_output(output, [pool, model], records=True)
        chooser = registry.create("query", strategy, param)
        head = load_head(model)
        context = QueryContext(seed=seed, ensemble=is_ensemble(head), embed_prompts=prompt_embedder(head),
                               last_hidden=getattr(head, "last_hidden", None))
        check_strategy(chooser, context.ensemble)
        name = "<stdin>" if pool == "-" else pool
        with ui.progress("scoring the pool", None, "pairs") as advance:

            def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
                for row in rows:
                    advance(1)
                    yield row

            scored = counted(score_unlabeled(iter_unlabeled(pool, name=name, split=split), head, batch_size))
            picked, n = select(scored, chooser, k, context)
        with record_writer(output) as write:
            for rec in to_label(picked, strategy):
                write(rec)
        ui.info(f"query {strategy}: {len(picked)} of {n} pairs from {name} to label (fill 'preferred' with a, b or "
                f"tie){'' if output == '-' else ' in ' + output}")
