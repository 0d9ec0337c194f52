"""The ``msgpass`` command. It only parses arguments and calls the library.

Exit status: 0 when every step holds, 1 when verification fails, 2 on a usage or input error
(reported in one line, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .. import __version__
from ..demos import DEMOS, show
from ..errors import MsgpassError
from ..numbers import arithmetic, is_number_mode
from ..spec import DEFAULT_SPEC, build_network, message_count
from ..testing import random_batch
from ..verification import DEFAULT_NUMERIC_ENTRIES, verify
from . import train as train_command


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + error; we want one line, exit 2
        self.exit(2, f"msgpass: error: {message} (see msgpass {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"msgpass: error: {message} (see msgpass --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive, _nonnegative = _int_at_least(1), _int_at_least(0)


def make_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="msgpass", description=(
        "Backpropagation as explicit message passing, proven equal to standard backprop."))
    parser.add_argument("--version", action="version", version=f"msgpass {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineParser)
    v = sub.add_parser("verify", help="walk the induction proof on a network and a seeded batch",
                       description=(
                           "Run the message pass on a network and a fixed seeded batch, and "
                           "check every step of the induction against standard backprop and "
                           "numerical differentiation. Exit 0 only if every step holds."))
    v.add_argument("--arch", default=DEFAULT_SPEC, metavar="SPEC", help=(
        "architecture: input width, then widths (Affine) and layer names (relu, sigmoid, tanh, "
        "softmax, logsoftmax), ending in a loss (sce, nll, mse), joined by '-'; or an image "
        "CxHxW first, then conv6k5p2 (channels, kernel, [stride,] padding), maxpool2, "
        "avgpool2, gap, flatten, batchnorm; or a preset: lenet5, digits-cnn; "
        f"default {DEFAULT_SPEC}"))
    v.add_argument("--batch", type=_positive, default=8, help="batch size (default 8)")
    v.add_argument("--seed", type=_nonnegative, default=0,
                   help="seed of the weights and the batch (default 0)")
    v.add_argument("--dtype", type=_arithmetic, default="float64", metavar="ARITHMETIC",
                   help=("float64 (default), float32, exact (Fractions: Affine, Conv2d, pools, "
                         "Flatten, ReLU, MSE, NLL only) or mp:D (mpmath at D digits, optional "
                         "extra)"))
    v.add_argument("--numeric-entries", type=_positive, default=DEFAULT_NUMERIC_ENTRIES,
                   metavar="N", help=("estimate at most N entries of each parameter, and of each "
                                      "tail at most N nodes (for every sample), numerically "
                                      f"(a seeded sample; default {DEFAULT_NUMERIC_ENTRIES})"))
    v.add_argument("--no-numeric", action="store_true",
                   help="skip the numerical witness (checks against backprop only)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    train_command.add_parser(sub)
    d = sub.add_parser("demo", help="print a textbook example's values and every message",
                       description="Worked examples: " + ", ".join(DEMOS) + ".")
    d.add_argument("name", nargs="?", help="which demo; leave out to list them")
    d.add_argument("--verify", action="store_true", help="also print the induction proof")
    f = sub.add_parser("figures", help="regenerate every figure (deterministic, no display)",
                       description="Draw every figure of figures/ again, the same bytes each run.")
    f.add_argument("--out", default="figures", metavar="DIR",
                   help="where to write them (default: figures)")
    f.add_argument("--mnist", metavar="DIR", help=(
        "MNIST directory for the LeNet-5 figures (default $MSGPASS_MNIST, else "
        "../shared/data/mnist beside the checkout; without MNIST they are left out)"))
    return parser


def run_figures(args) -> int:
    from ..gallery import LENET_FIGURES, find_mnist, make_figures  # matplotlib: only here
    if find_mnist(args.mnist) is None:
        print(f"msgpass: no MNIST found, so {', '.join(LENET_FIGURES)} are not drawn (give "
              f"--mnist DIR)", file=sys.stderr)
    for path in make_figures(args.out, args.mnist):
        print(path)
    return 0


def run_demo(args) -> int:
    if args.name is None:
        for name, demo in DEMOS.items():
            print(f"{name:<16} {demo.title} ({demo.source})")
        return 0
    if args.name not in DEMOS:
        raise MsgpassError(f"no demo named {args.name!r}; the demos are {', '.join(DEMOS)}")
    print(show(args.name))
    if args.verify:
        graph, output = DEMOS[args.name].build()
        report = verify(graph, output)
        print()
        print(report)
        return 0 if report.ok else 1
    return 0


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: do not guess
        return 1 << 62


def _arithmetic(text: str) -> str:
    """--dtype through the library's one parser; the canonical name back."""
    try:
        chosen = arithmetic(text)
    except MsgpassError as err:
        if is_number_mode(text):       # mp:D with bad digits, or mpmath missing: say which
            raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
        raise argparse.ArgumentTypeError(f"{text!r}: use float64, float32, exact or mp:D "
                                         f"(e.g. mp:50)") from None
    return str(chosen) if isinstance(chosen, np.dtype) else chosen.name


def run_verify(args) -> int:
    floating = args.dtype in ("float64", "float32")
    itemsize = np.dtype(args.dtype).itemsize if floating else 8   # object arrays: pointers
    need = message_count(args.arch, args.batch) * itemsize
    have = _physical_memory()
    if need > have:
        raise MsgpassError(f"verifying {args.arch!r} at batch {args.batch} keeps about "
                           f"{need / 2**30:.3g} GiB of messages, more than this machine's "
                           f"{have / 2**30:.3g} GiB; use a smaller batch or network")
    net = build_network(args.arch, seed=args.seed, dtype=args.dtype if floating else "float64")
    x, target = random_batch(net, args.batch, np.random.default_rng(args.seed))
    if not floating:   # the same seeded float64 network and batch, converted exactly
        net = net.astype(args.dtype)
    report = verify(net, x, target, numeric=not args.no_numeric,
                    numeric_entries=args.numeric_entries, numeric_seed=args.seed)
    if args.json:
        print(json.dumps({"arch": args.arch, "seed": args.seed, **report.to_dict()}, indent=2))
    else:
        print(f"network {args.arch!r}, seed {args.seed}")
        print(report)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print("msgpass: error: choose a command: verify, train, demo or figures (see "
              "msgpass --help)",
              file=sys.stderr)
        return 2
    commands = {"verify": run_verify, "demo": run_demo, "figures": run_figures,
                "train": train_command.run}
    try:
        return commands[args.command](args)
    except MsgpassError as err:
        print(f"msgpass: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:   # bad values the library refuses, e.g. lr < 0
        print(f"msgpass: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"msgpass: error: not enough memory for this network and batch ({err})",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
