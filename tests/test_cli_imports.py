"""cli: --help of the app and of every command loads neither numpy nor torch, nor the library behind the commands.

The commands import the loop, compare, steps, metrics and the rest inside their bodies; the options are built
from config.py's fields, which import only the parameter checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Modules that only a command's body may load (a name that no longer exists is simply never loaded).
BODY_ONLY = ["loop", "compare", "steps", "augmentation", "metrics", "records", "jsonio", "formats", "outputs",
             "checks", "modeldir", "plugin", "registry", "embed", "store", "report", "htmlreport", "plots",
             "rundir", "selection", "alloc"]
HEAVY = ["numpy", "torch", "sentence_transformers", "transformers", "marsctl_plugins", "pyarrow", "datasets"]
MAX_CORE_MODULES = 12  # marsctl modules outside marsctl.cli that --help may load (10 when this test was written)

HELP_EVERYTHING = textwrap.dedent("""
    import json, sys
    import typer
    from typer.testing import CliRunner
    from marsctl.cli.app import app

    root = typer.main.get_command(app)
    argvs = [[]]
    for name, cmd in root.commands.items():
        argvs.append([name])
        argvs += [[name, sub] for sub in getattr(cmd, "commands", {})]
    runner = CliRunner()
    for argv in argvs:
        result = runner.invoke(app, [*argv, "--help"])
        assert result.exit_code == 0, (argv, result.output)
        assert "Usage:" in result.output, (argv, result.output)
    try:
        app(["--help"])  # the console script's way in
    except SystemExit as e:
        assert e.code == 0, e.code
    print(json.dumps({"argvs": argvs, "modules": sorted(sys.modules)}))
""")


def _help_everything() -> dict:
    proc = subprocess.run([sys.executable, "-c", HELP_EVERYTHING], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_of_app_and_every_command_imports_no_numpy_torch_or_command_body():
    seen = _help_everything()
    commands = {argv[0] for argv in seen["argvs"] if argv}
    assert {"train", "score", "select", "augment", "refine", "eval", "compare", "plugins"} <= commands
    assert ["plugins", "show"] in seen["argvs"]
    modules = set(seen["modules"])
    assert [m for m in HEAVY if m in modules] == []
    loaded_bodies = [m for m in BODY_ONLY if f"marsctl.{m}" in modules]
    assert loaded_bodies == [], loaded_bodies
    core = sorted(m for m in modules if m.startswith("marsctl") and not m.startswith("marsctl.cli"))
    assert len(core) <= MAX_CORE_MODULES, core
