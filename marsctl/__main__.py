"""``python -m marsctl`` (also what ``torchrun -m marsctl`` and ``accelerate launch -m marsctl`` run)."""

from marsctl.cli.app import main

main()
