"""marsctl: margin-aware reward modeling with self-refinement (MARS)."""

__version__ = "0.1.0"
FORMAT_VERSION = 1
