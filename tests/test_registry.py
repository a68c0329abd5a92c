"""The plugin registry: lazy loading, clear errors, and a real third-party distribution."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl import registry
from marsctl.errors import PluginError


def test_unknown_name_suggests_closest():
    with pytest.raises(PluginError) as err:
        registry.load("head", "mpl")
    assert "Unknown head 'mpl'. Installed: " in str(err.value)
    assert "mlp" in str(err.value) and err.value.hint == "Did you mean 'mlp'?"


def test_load_plugins_env_restricts(monkeypatch):
    monkeypatch.setenv("MARSCTL_LOAD_PLUGINS", "mlp,uniform")
    assert registry.names("head") == ["mlp"]
    assert registry.names("selector") == ["uniform"]
    with pytest.raises(PluginError, match="Unknown selector 'mars'"):
        registry.load("selector", "mars")


def test_help_and_plugins_do_not_import_torch():
    code = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        from marsctl.cli.app import app
        r = CliRunner().invoke(app, ["--help"]); assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["plugins", "--json"]); assert r.exit_code == 0, r.output
        heavy = [m for m in ("torch", "sentence_transformers", "transformers", "numpy", "marsctl_plugins")
                 if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_plugins_json_lists_every_kind():
    proc = run_cli("plugins", "--json", check=True)
    rows = json.loads(proc.stdout)
    names = {(r["kind"], r["name"]) for r in rows}
    for want in [("head", "mlp"), ("head", "linear"), ("augmenter", "eda"), ("selector", "mars"),
                 ("selector", "mars-abs"), ("selector", "uniform"), ("selector", "won")]:
        assert want in names
    assert all(r["version"] for r in rows)


def _third_party(tmp: Path) -> Path:
    """A tiny installed distribution with its own entry point (a dist-info on sys.path)."""
    site = tmp / "site"
    pkg = site / "marsctl_firstpair"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from marsctl.plugin import Selector

        class FirstPair(Selector):
            """Puts the whole budget on the first pair (for tests)."""
            version = "9.9.9"
            def weights(self, margins):
                return [1.0] + [0.0] * (len(margins) - 1)
    '''))
    dist = site / "marsctl_firstpair-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: marsctl-firstpair\nVersion: 9.9.9\n")
    (dist / "entry_points.txt").write_text("[marsctl.selectors]\nfirst-pair = marsctl_firstpair:FirstPair\n")
    return site


def test_third_party_plugin_discovered_and_usable_from_cli(tmp_path):
    site = _third_party(tmp_path)
    env = {"PYTHONPATH": str(site)}
    listing = json.loads(run_cli("plugins", "--json", env=env, check=True).stdout)
    mine = [r for r in listing if r["name"] == "first-pair"]
    assert mine == [{"kind": "selector", "name": "first-pair", "value": "marsctl_firstpair:FirstPair",
                     "distribution": "marsctl-firstpair", "version": "9.9.9"}]
    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:5]
    scored = "".join(json.dumps({**r, "pred_margin": 0.1 * i}) + "\n" for i, r in enumerate(rows))
    proc = run_cli("select", "-", "--strategy", "first-pair", "--budget", "7", input=scored, env=env, check=True)
    budgets = [json.loads(line)["budget"] for line in proc.stdout.splitlines()]
    assert budgets == [7, 0, 0, 0, 0]


def test_fake_plugin_fixture_registers_for_one_test(fake_plugin):
    from marsctl.plugin import Selector

    class Half(Selector):
        def weights(self, margins):
            return [1 / len(margins)] * len(margins)

    fake_plugin("selector", "half", Half)
    assert registry.load("selector", "half") is Half
    assert "half" in registry.names("selector")
