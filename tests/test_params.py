"""params: configs built from key=value strings or dicts, interval and choice checks, config rows for help."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from marsctl.errors import ConfigError
from marsctl.params import build_config, check_choice, check_interval, describe_config


@dataclass
class Demo:
    """A config with one field of each parsed type."""

    n: int = field(default=3, metadata={"help": "A count."})
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    tags: list[str] = field(default_factory=list)


def error(fn, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    return e.value


def test_build_config_parses_strings_to_the_field_types():
    cfg = build_config(Demo, ["n=7", " rate = 0.25", "flag=yes", "name=a=b"], "demo")
    assert (cfg.n, cfg.rate, cfg.flag, cfg.name) == (7, 0.25, True, "a=b")
    assert build_config(Demo, ["flag=0"], "demo").flag is False
    assert build_config(Demo, None, "demo") == Demo()
    assert build_config(Demo, {"rate": 1, "flag": True}, "demo") == Demo(rate=1.0, flag=True)
    assert isinstance(build_config(Demo, {"rate": 1}, "demo").rate, float)


@pytest.mark.parametrize(("given", "message"), [
    (["n=three"], "The 'n' parameter of demo must be an int. Got 'three' instead."),
    (["rate=fast"], "The 'rate' parameter of demo must be a float. Got 'fast' instead."),
    (["flag=maybe"], "The 'flag' parameter of demo must be a bool. Got 'maybe' instead."),
    (["n"], "Parameters for demo are given as key=value. Got 'n' instead."),
    ({"n": "3"}, "The 'n' parameter of demo must be an int. Got '3' instead."),
    ({"n": True}, "The 'n' parameter of demo must be an int. Got True instead."),
    ({"flag": 1}, "The 'flag' parameter of demo must be a bool. Got 1 instead."),
    (5, "Parameters for demo must be key=value strings or a mapping. Got int instead."),
])
def test_build_config_refuses_bad_values_with_exact_messages(given, message):
    assert str(error(build_config, Demo, given, "demo")) == message


def test_build_config_names_unknown_keys_and_suggests_the_closest():
    e = error(build_config, Demo, ["nmae=y"], "demo")
    assert str(e) == "Unknown parameter 'nmae' for demo. Allowed: n, rate, flag, name, tags."
    assert e.hint == "Did you mean 'name'?"
    assert error(build_config, Demo, {"zzz": 1}, "demo").hint is None


@pytest.mark.parametrize(("value", "kwargs"), [
    (5, {"kind": int, "low": 1}), (1, {"kind": int, "low": 1}), (3, {"low": 0, "high": 3}),
    (0.5, {"low": 0, "high": 1, "closed": "neither"}), (2, {}), (10**30, {}),
])
def test_check_interval_returns_good_values(value, kwargs):
    assert check_interval(value, "p", "demo", **kwargs) == value


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {"kind": int, "low": 1}, "The 'p' parameter of demo must be an int in the range [1, inf). Got 0 instead."),
    (1.0, {"kind": int, "low": 1}, "The 'p' parameter of demo must be an int in the range [1, inf). Got 1.0 instead."),
    (True, {"kind": int}, "The 'p' parameter of demo must be an int in the range (-inf, inf). Got True instead."),
    (0, {"low": 0, "closed": "right"}, "The 'p' parameter of demo must be a float in the range (0, inf). Got 0 instead."),
    (1, {"low": 0, "high": 1, "closed": "left"},
     "The 'p' parameter of demo must be a float in the range [0, 1). Got 1 instead."),
    (math.nan, {}, "The 'p' parameter of demo must be a float in the range (-inf, inf). Got nan instead."),
    (-math.inf, {}, "The 'p' parameter of demo must be a float in the range (-inf, inf). Got -inf instead."),
    ("2", {}, "The 'p' parameter of demo must be a float in the range (-inf, inf). Got '2' instead."),
])
def test_check_interval_refuses_with_exact_messages(value, kwargs, message):
    assert str(error(check_interval, value, "p", "demo", **kwargs)) == message


def test_check_choice():
    assert check_choice("replace", "merge", "refine", ["replace", "accumulate"]) == "replace"
    e = error(check_choice, "acumulate", "merge", "refine", ["replace", "accumulate"])
    assert str(e) == "The 'merge' parameter of refine must be one of replace, accumulate. Got 'acumulate' instead."
    assert e.hint == "Did you mean 'accumulate'?"
    assert error(check_choice, "zzz", "merge", "refine", ["replace", "accumulate"]).hint is None


def test_describe_config_rows():
    assert describe_config(Demo) == [
        ("n", "int", 3, "A count."), ("rate", "float", 0.5, ""), ("flag", "bool", False, ""),
        ("name", "str", "x", ""), ("tags", "list[str]", None, ""),
    ]
