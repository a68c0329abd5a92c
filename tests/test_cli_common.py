"""cli.common: options built from the config dataclasses (each help and default written once), and the
old flag spellings still accepted through the real CLI."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from conftest import FIXTURES, run_cli

from marsctl.cli.app import app
from marsctl.cli.common import default_of, help_of
from marsctl.config import CompareConfig, RefineConfig

TINY = str(FIXTURES / "tiny.jsonl")
SCORED = '{"id":"a","prompt":"p","chosen":"a","rejected":"b","score_chosen":1.0,"score_rejected":0.0,' \
         '"pred_margin":1.0,"p_chosen":0.7}'
SELECTED = SCORED[:-1] + ',"budget":1}'


def _options(command: str) -> dict[str, Any]:
    cmd = typer.main.get_command(app).commands[command]
    return {opt: p for p in cmd.params for opt in [*p.opts, *p.secondary_opts]}


@pytest.mark.parametrize("command, flag, field", [
    ("refine", "--crossfit", "crossfit"), ("refine", "--epochs", "epochs"), ("refine", "--cap", "cap"),
    ("refine", "--match-steps", "match_steps"), ("refine", "--strategy", "strategy"),
    ("refine", "--rounds", "rounds"), ("select", "--strategy", "strategy"), ("select", "--mix-uniform", "mix_uniform"),
    ("augment", "--backend", "backend"), ("compare", "--crossfit", "crossfit"), ("compare", "--guard", "guard"),
])
def test_options_take_help_and_default_from_refine_config(command, flag, field):
    opt = _options(command)[flag]
    own = help_of(RefineConfig, field)
    assert opt.help == own or opt.help.startswith(own + " Range: [")  # a bounded option adds its range
    defaults = default_of(CompareConfig, "refine") if command == "compare" else RefineConfig
    assert opt.default == default_of(defaults, field)


def test_compare_defaults_are_compare_configs():
    opts = _options("compare")
    assert opts["--rounds"].default == CompareConfig().refine.rounds == 1
    assert opts["--seeds"].default == 5 and opts["--seeds"].help == help_of(CompareConfig, "seeds") + " Range: [1, 1000]."
    assert opts["--strategies"].default == ",".join(default_of(CompareConfig, "strategies"))
    assert opts["--test-frac"].help == help_of(CompareConfig, "test_frac")


@pytest.mark.parametrize("command, short_kind", [("train", "head"), ("refine", "head"), ("compare", "head"),
                                                  ("select", "selector"), ("augment", "augmenter")])
def test_p_is_the_commands_main_plugin_kind_and_old_spellings_are_hidden(command, short_kind):
    opts = _options(command)
    flag = {"head": "--head-param", "selector": "--selector-param", "augmenter": "--augment-param"}[short_kind]
    assert opts["-p"] is opts[flag] and f"{short_kind.capitalize()} parameter" in opts["-p"].help
    assert opts["--param"].hidden
    if command in ("refine", "compare"):
        assert {"--head-param", "--selector-param", "--augment-param", "--eval"} <= set(opts)
        assert opts["--heldout"].hidden and not opts["--eval"].hidden
    if command == "refine":
        assert opts["--select-param"].hidden


@pytest.mark.parametrize("args, stdin, message", [
    pytest.param(["train", TINY, "-o", "OUT", "--param", "hiden=3"], None, "for the head 'mlp'", id="train-param"),
    pytest.param(["train", TINY, "-o", "OUT", "--head-param", "hiden=3"], None, "for the head 'mlp'",
                 id="train-head-param"),
    pytest.param(["select", "-", "--budget", "2", "--param", "foo=1"], SCORED, "for the selector 'mars-abs'",
                 id="select-param"),
    pytest.param(["select", "-", "--budget", "2", "--selector-param", "foo=1"], SCORED,
                 "for the selector 'mars-abs'", id="select-selector-param"),
    pytest.param(["augment", "-", "--param", "foo=1"], SELECTED, "for the augmenter 'eda'", id="augment-param"),
    pytest.param(["refine", TINY, "--out", "OUT", "--select-param", "foo=1"], None, "for the selector 'mars-abs'",
                 id="refine-select-param"),
    pytest.param(["refine", TINY, "--out", "OUT", "--param", "hiden=3"], None, "for the head 'mlp'",
                 id="refine-param"),
    pytest.param(["compare", TINY, "--out", "OUT", "--param", "hiden=3"], None, "for the head 'mlp'",
                 id="compare-param"),
    pytest.param(["compare", TINY, "--out", "OUT", "-p", "hiden=3"], None, "for the head 'mlp'", id="compare-p"),
    pytest.param(["compare", TINY, "--out", "OUT", "--selector-param", "foo=1"], None,
                 "Unknown selector parameter 'foo' for compare", id="compare-selector-param"),
    pytest.param(["compare", TINY, "--out", "OUT", "--heldout", "MISSING"], None, "MISSING: no such file",
                 id="compare-heldout"),
    pytest.param(["compare", TINY, "--out", "OUT", "--eval", "MISSING"], None, "MISSING: no such file",
                 id="compare-eval"),
    pytest.param(["refine", TINY, "--out", "OUT", "--heldout", "MISSING"], None, "MISSING: no such file",
                 id="refine-heldout"),
    pytest.param(["compare", TINY, "--out", "OUT", "--eval", TINY, "--heldout", TINY], None,
                 "--heldout is the old spelling of --eval", id="both-spellings"),
])
def test_flags_and_old_spellings_reach_the_right_plugin(tmp_path, args, stdin, message):
    args = [str(tmp_path / a) if a in ("OUT", "MISSING") else a for a in args]
    proc = run_cli(*args, input=stdin)
    assert proc.returncode == 2, proc.stderr
    assert "Error:" in proc.stderr and message.replace("MISSING", str(tmp_path / "MISSING")) in proc.stderr
    assert not (tmp_path / "OUT").exists()
