"""The version of marsctl and of the files it writes (a leaf: imports nothing from marsctl)."""

__version__ = "0.1.0"
FORMAT_VERSION = 1  # of model directories and run folders; a reader refuses a newer one
