"""The ``opreg`` command (also ``python -m opreg``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import cast

from opreg import plugin_manager
from opreg.errors import GradcheckError, OpregError, PluginLoadError
from opreg.evaluation import evaluate
from opreg.files import atomic_write, check_writable
from opreg.newop import new_op
from opreg.opcheck import check_op
from opreg.plot import check_can_plot, plot_history
from opreg.progress import EpochProgress, format_loss
from opreg.registry import get_registry
from opreg.selection import report, select, split_names
from opreg.train import (
    ACTIVATIONS,
    DEFAULT_LR,
    DTYPES,
    ENGINES,
    MODEL_DEFAULTS,
    MODELS,
    OPTIMIZERS,
    TrainConfig,
    train,
)


def _layer_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes such as 128,64, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _train(args: argparse.Namespace) -> int:
    # the settings a model has its own defaults for (MODEL_DEFAULTS) are passed only when given
    given = {name: getattr(args, name) for name in ("epochs", "batch_size", "optimizer", "lr") if name in args}
    config = TrainConfig.for_model(
        args.model,
        **given,
        hidden=args.hidden,
        momentum=args.momentum,
        activation=args.activation,
        engine=args.engine,
        seed=args.seed,
        data=args.data,
        allow_nonfinite=args.allow_nonfinite,
        dtype=args.dtype,
        compile=not args.no_compile,
    )
    if args.save:  # before training, not after it: a run must not end in a write that cannot happen
        check_writable(args.save)
    if args.plot:
        check_can_plot(args.plot)
    progress = None if args.quiet else EpochProgress(config.epochs)
    try:
        result = train(config, on_batch=progress)
    finally:
        if progress is not None:
            progress.close()
    precision = "" if config.dtype == "float64" else f", {config.dtype}"
    print(f"{result.description}, {config.optimizer}, {config.engine} engine, {config.epochs} epochs{precision}")
    final = result.final
    _print_table(
        ["final loss", "train accuracy", "test accuracy", "time", "steps/s"],
        [
            [
                format_loss(final.loss),
                f"{final.train_accuracy:.1%}",
                f"{final.test_accuracy:.1%}",
                f"{result.seconds:.1f} s",
                f"{result.steps_per_second:,.0f}" + ("" if config.compile else " (eager)"),
            ]
        ],
    )
    if args.save:
        result.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot:
        plot_history(result.history, args.plot)
        print(f"saved the learning curves to {args.plot}")
    print(f"test accuracy: {final.test_accuracy:.1%}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    result = evaluate(args.model, args.data, held_out=args.held_out)
    classes = range(len(result.confusion))
    print(f"accuracy: {result.accuracy:.1%} on {result.n_examples} examples ({result.source})")
    print("confusion matrix (rows: true class, columns: predicted class):")
    _print_table(["", *map(str, classes)], [[str(i), *row] for i, row in zip(classes, result.confusion, strict=True)])
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
        plugin = op.plugin if op.overrides is None else f"{op.plugin} (overrides {op.overrides})"
        rows.append([op.name, signature, plugin, dist, version, op.doc.split("\n", 1)[0]])
    _print_table(["op", "inputs, attributes", "plugin", "distribution", "version", "doc"], rows)
    return 0


def _plugins(args: argparse.Namespace) -> int:
    # loading the ops is what skips a plugin whose hook fails, or an op that is invalid; under OPREG_STRICT=1 that
    # raises, and the listing below is what says why
    with contextlib.suppress(PluginLoadError):
        get_registry()
    infos = plugin_manager.plugin_infos()
    rows = [[info.name, info.status, info.distribution, info.version, _path_or_reason(info)] for info in infos]
    _print_table(["plugin", "status", "distribution", "version", "path or reason"], rows)
    skipped_ops = [[op.name, info.name, op.reason] for info in infos for op in info.skipped_ops.values()]
    if skipped_ops:  # ops of loaded plugins, left out alone (a clash, an invalid declaration)
        print("\nskipped ops:")
        _print_table(["op", "plugin", "reason"], skipped_ops)
    return 0


def _path_or_reason(info: plugin_manager.PluginInfo) -> str | None:
    if info.reason:
        return info.reason
    if info.skipped_ops:
        return f"{info.path} ({len(info.skipped_ops)} of its ops skipped: below)"
    return info.path


def _check(args: argparse.Namespace) -> int:
    try:
        chosen = select(args.selection, exclude=split_names(args.exclude))
        if args.json:
            check_writable(args.json)  # before the checks, not after minutes of them
    except OpregError as exc:
        print(f"opreg check: {exc}", file=sys.stderr)
        return 2
    ops = chosen.ops
    failed = 0
    results: list[dict[str, object]] = []
    for op in ops:
        try:
            checked = check_op(op, seed=args.seed, fast=args.fast)
        except GradcheckError as exc:
            failed += 1
            print(f"FAIL  {op.plugin}:{op.name}\n      {exc}")
            results.append({"op": op.name, "plugin": op.plugin, "status": "failed", "error": str(exc)})
            continue
        samples = len(checked.samples)
        print(
            f"ok    {op.plugin}:{op.name}: {samples} sample{'s' * (samples != 1)}, {checked.checks} checks, "
            f"worst relative error {checked.worst_rel_error:.2g}"
        )
        if args.verbose:
            for sample in checked.samples:
                attributes = "".join(f", {k}={v}" for k, v in sample.attributes.items())
                print(f"      sample {sample.index}: {', '.join(sample.inputs)}{attributes}")
                for passed in sample.checks:
                    print(f"        ok  {passed}")
                for c in sample.comparisons:
                    print(f"        ok  {c.what}: max abs error {c.max_abs_error:.2g}, max rel {c.max_rel_error:.2g}")
        results.append({"status": "ok", **checked.to_dict()})
    for skipped in chosen.skipped:  # not checked, so not green: each a failure
        name = skipped.plugin if skipped.op is None else f"{skipped.plugin}:{skipped.op}"
        print(f"FAIL  {name} (skipped)\n      {report(skipped)}")
        results.append({"op": skipped.op, "plugin": skipped.plugin, "status": "skipped", "error": report(skipped)})
    skipped_note = f" ({len(chosen.skipped)} skipped plugins or ops)" if chosen.skipped else ""
    print(f"{len(ops) - failed} passed, {failed + len(chosen.skipped)} failed{skipped_note}")
    if args.json:
        with atomic_write(args.json) as file:
            file.write(json.dumps(results, indent=1).encode())
    return 1 if failed or chosen.skipped else 0


def _new_op(args: argparse.Namespace) -> int:
    folder = new_op(args.name, args.dir)
    module = f"opreg_{args.name}.py"
    print(f"wrote {folder}/: pyproject.toml, {module}, tests/test_{args.name}.py, README.md")
    print(f"next: write the two functions marked TODO in {folder / module} (and reference in the test), then")
    path = str(folder) if folder.is_absolute() else f"./{folder}"  # pip reads "opreg-NAME[test]" as a PyPI name
    print(f'  pip install -e "{path}[test]"')
    print(f"  opreg check {args.name}")
    print(f"  pytest {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opreg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train an MLP on the bundled handwritten digits",
        description="Train an MLP classifier (softmax cross-entropy) on the bundled UCI digits or on your own "
        "data; 20% of the rows are held out for testing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    cnn = MODEL_DEFAULTS["cnn"]  # a default that depends on --model is absent from args unless given (SUPPRESS)
    train.add_argument(
        "--epochs",
        type=int,
        default=argparse.SUPPRESS,
        help=f"passes over the training set (default: {defaults.epochs}; --model cnn: {cnn['epochs']})",
    )
    train.add_argument(
        "--batch-size",
        type=int,
        default=argparse.SUPPRESS,
        help=f"rows per step (default: {defaults.batch_size}; --model cnn: {cnn['batch_size']})",
    )
    train.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=argparse.SUPPRESS,
        help=f"the optimizer (default: {defaults.optimizer}; --model cnn: {cnn['optimizer']})",
    )
    lr_defaults = ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items())
    train.add_argument(
        "--lr",
        type=float,
        default=argparse.SUPPRESS,
        help=f"learning rate (by optimizer: {lr_defaults}; --model cnn with adam: {cnn['lr']})",
    )
    train.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    # A string default goes through type= too, so the help shows it as it would be typed.
    hidden = ",".join(map(str, defaults.hidden))
    train.add_argument("--hidden", type=_layer_sizes, default=hidden, help="hidden layer sizes, comma-separated")
    train.add_argument(
        "--activation",
        metavar="OP",
        default=defaults.activation,
        help=f"the activation between layers: {', '.join(ACTIVATIONS)} or any registered unary op (one "
        "differentiable input, an output of its shape), with attributes as NAME(attribute=value, ...), e.g. "
        "'leaky_relu(negative_slope=0.1)'",
    )
    train.add_argument(
        "--engine", choices=ENGINES, default=defaults.engine, help="the handout's tape engine, or Tensors"
    )
    train.add_argument(
        "--model",
        choices=MODELS,
        default=defaults.model,
        help="the handout's MLP (--hidden, --activation), or a small CNN for square images: conv 3x3 16, ReLU, "
        "max pool 2, conv 3x3 32, ReLU, max pool 2, linear",
    )
    train.add_argument("--dtype", choices=DTYPES, default=defaults.dtype, help="the weights' and data's precision")
    train.add_argument("--seed", type=int, default=defaults.seed, help="seed for the split, weights and batches")
    train.add_argument(
        "--data", metavar="FILE", help="CSV (label in the last column) or .npz (x, y) to train on; default: digits"
    )
    train.add_argument("--save", metavar="MODEL.npz", help="save the trained model, for opreg evaluate")
    train.add_argument("--plot", metavar="CURVES.png", help="plot loss and accuracy per epoch (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--no-compile",
        action="store_true",
        help="run every training step eagerly, not recorded once and replayed (opreg.compile; the same numbers)",
    )
    train.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="train on past a NaN or infinite loss instead of stopping there",
    )
    train.set_defaults(run=_train)

    evaluate_ = commands.add_parser(
        "evaluate",
        help="accuracy and confusion matrix of a saved model",
        description="Score a model saved by opreg train --save: on every row of FILE, or with --held-out on the "
        "rows training held out of FILE, split again as training split it; without --data, a model trained on the "
        "bundled digits on its held-out digits. A model saved by opreg.nn.save (which records a built-in model's "
        "architecture) is scored on every row of FILE, or of the bundled digits.",
    )
    evaluate_.add_argument("model", metavar="MODEL.npz", help="a model saved by opreg train --save or by opreg.nn.save")
    evaluate_.add_argument("--data", metavar="FILE", help="CSV or .npz to evaluate on (every row)")
    evaluate_.add_argument(
        "--held-out",
        action="store_true",
        help="only the rows training held out of FILE, split as training split it: FILE must be the training data",
    )
    evaluate_.set_defaults(run=_evaluate)

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
        "plugins or distributions named; on every op when none is named. An installed plugin or op that was "
        "skipped when loading (`opreg plugins` says why) fails the check of every op, and one that names it. "
        "Exits 1 if any check fails.",
    )
    check.add_argument("selection", nargs="*", metavar="OP|PLUGIN", help="ops, plugins or distributions to check")
    check.add_argument(
        "--exclude",
        action="append",
        metavar="NAME[,NAME]",
        help="leave out these ops, plugins or distributions (or PLUGIN:OP), and do not fail because they were skipped",
    )
    check.add_argument("--seed", type=int, default=0, help="seed for the sample inputs (default: 0)")
    check.add_argument("-v", "--verbose", action="store_true", help="list each sample and each check passed")
    check.add_argument(
        "--json", metavar="FILE", help="write every op's report (samples, checks, worst errors; failures) as JSON"
    )
    check.add_argument(
        "--fast", action="store_true", help="one directional derivative per input instead of every element"
    )
    check.set_defaults(run=_check)

    new = commands.add_parser(
        "new-op",
        help="write a new op package to fill in: opreg-NAME/",
        description="Write opreg-NAME/: pyproject.toml with the opreg entry point, opreg_NAME.py with the op's "
        "forward and backward to write (each raises NotImplementedError until then) and its samples, a property "
        "test against NumPy and a README with the commands. Refuses (exit 2) a name that is not an identifier or is "
        "already installed, and a folder that exists.",
    )
    new.add_argument("name", metavar="NAME", help="the op's name, a Python identifier (the package is opreg-NAME)")
    new.add_argument("--dir", default=".", help="the folder to write opreg-NAME/ in (default: the current one)")
    new.set_defaults(run=_new_op)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cast(int, args.run(args))  # each command's function, set_defaults(run=...)
    except OpregError as exc:  # bad data, a model file that does not fit, a missing extra: a message, no traceback
        print(f"opreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # beyond what require_memory estimated, or where the memory available is unknown
        print(f"opreg {args.command}: out of memory: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
