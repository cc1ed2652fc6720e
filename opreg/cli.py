"""The ``opreg`` command (also ``python -m opreg``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from opreg import plugin_manager
from opreg.errors import GradcheckError, OpUsageError
from opreg.opcheck import check_op, select_ops
from opreg.progress import EpochProgress
from opreg.registry import get_registry
from opreg.train import TrainConfig, train_digits


def _layer_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes such as 128,64, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _train(args: argparse.Namespace) -> int:
    config = TrainConfig(hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = train_digits(config, on_batch=None if args.quiet else EpochProgress(args.epochs))
    print(f"trained MLP 64-{'-'.join(map(str, args.hidden))}-10 for {args.epochs} epochs in {result.seconds:.1f} s")
    print(f"final training loss: {result.epoch_losses[-1]:.4f}")
    print(f"train accuracy: {result.train_accuracy:.1%}")
    print(f"test accuracy: {result.test_accuracy:.1%}")
    return 0


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(headers), *([("-" if cell is None else str(cell)) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _ops(args: argparse.Namespace) -> int:
    infos = plugin_manager.plugin_infos_by_name()
    rows = []
    for op in get_registry().values():
        info = infos.get(op.plugin)
        dist, version = (info.distribution, info.version) if info else (None, None)
        signature = ", ".join([*op.inputs, *(f"{k}={v!r}" for k, v in op.attributes.items())])
        rows.append([op.name, signature, op.plugin, dist, version, op.doc.split("\n", 1)[0]])
    _print_table(["op", "inputs, attributes", "plugin", "distribution", "version", "doc"], rows)
    return 0


def _plugins(args: argparse.Namespace) -> int:
    get_registry()  # loading the ops is what skips a plugin whose ops are invalid
    rows = [
        [info.name, info.status, info.distribution, info.version, info.reason or info.path]
        for info in plugin_manager.plugin_infos()
    ]
    _print_table(["plugin", "status", "distribution", "version", "path or reason"], rows)
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        ops = select_ops(args.selection)
    except OpUsageError as exc:
        print(f"opreg check: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for op in ops:
        try:
            check_op(op, seed=args.seed)
        except GradcheckError as exc:
            failed += 1
            print(f"FAIL  {op.plugin}:{op.name}\n      {exc}")
        else:
            print(f"ok    {op.plugin}:{op.name}")
    print(f"{len(ops) - failed} passed, {failed} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opreg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train an MLP on the bundled handwritten digits",
        description="Train an MLP (ReLU, softmax cross-entropy, SGD) on the bundled UCI digits; 20% held out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training set")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="rows per SGD step")
    train.add_argument("--lr", type=float, default=defaults.lr, help="SGD learning rate")
    # A string default goes through type= too, so the help shows it as it would be typed.
    hidden = ",".join(map(str, defaults.hidden))
    train.add_argument("--hidden", type=_layer_sizes, default=hidden, help="hidden layer sizes, comma-separated")
    train.add_argument("--seed", type=int, default=defaults.seed, help="seed for the split, weights and batches")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    commands.add_parser(
        "ops", help="list the registered ops", description="List every registered op and the plugin it came from."
    ).set_defaults(run=_ops)
    commands.add_parser(
        "plugins",
        help="list the plugins: loaded, skipped (and why), disabled",
        description="List opreg's plugins with their distribution, version and path, or why one was not loaded.",
    ).set_defaults(run=_plugins)
    check = commands.add_parser(
        "check",
        help="check ops' gradients against finite differences",
        description="Run the op checks (contract and finite differences) on the ops named, or on the ops of the "
        "plugins or distributions named; on every op when none is named. Exits 1 if any check fails.",
    )
    check.add_argument("selection", nargs="*", metavar="OP|PLUGIN", help="ops, plugins or distributions to check")
    check.add_argument("--seed", type=int, default=0, help="seed for the sample inputs (default: 0)")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
