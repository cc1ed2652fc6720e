# CONTRIBUTING.md's op-package tutorial as it was at commit 3540a37, before the op contract was declared once, with
# one op added in that earlier contract's style (scaled_exp: attributes=, backward_uses_output=). Kept as written
# then, not updated: tests/test_legacy_package.py checks that a package written for the earlier contract still
# loads, warns and checks, and differentiates as the same ops written in the current contract do.
import numpy as np

import opreg


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))  # 1 / (1 + exp(-x)) without overflow


def _scaled_exp(x, *, alpha):
    return alpha * np.exp(x)


def _scaled_exp_samples(rng):
    return [opreg.Sample(rng.standard_normal((3, 4))), opreg.Sample(rng.standard_normal(5), alpha=2.5)]


@opreg.hookimpl
def opreg_register_ops(register):
    register(
        name="silu",
        inputs=("x",),
        forward=lambda x: x * _sigmoid(x),
        backward=lambda g, x: (g * _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),),
        doc="x * sigmoid(x), also called swish.",
    )
    register(
        name="scaled_exp",
        inputs=("x",),
        attributes={"alpha": 1.0},
        forward=_scaled_exp,
        backward=lambda g, x, *, alpha, output: (g * output,),
        backward_uses_output=True,
        sample_inputs=_scaled_exp_samples,
        doc="alpha * exp(x)",
    )
