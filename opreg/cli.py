"""The ``opreg`` command (also ``python -m opreg``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from opreg.progress import EpochProgress
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
