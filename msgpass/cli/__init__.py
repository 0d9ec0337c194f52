"""The ``msgpass`` command: main.py parses arguments and runs verify, demo and figures;
train.py is the train command. Both only parse arguments and call the library."""

from .commands import main

__all__ = ["main"]
