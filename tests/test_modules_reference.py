"""The handout walkthrough, the nn modules, the MLPs and SGD against PyTorch, in float64.

Each test builds the same computation in torch (weights copied from opreg) and compares values, every
gradient opreg produces (owned ``dW``/``db`` arrays and the engine's buffer) and, for the MLPs, the weights
after several SGD steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, Identity, Linear, MSELoss, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh
from opreg.optim import SGD

from torch_reference import needs_torch, torch

pytestmark = needs_torch  # every test here compares with torch
nn = None if torch is None else torch.nn

TOL = {"rtol": 1e-10, "atol": 1e-12}


def assert_close(actual, expected, what: str = "") -> None:
    """Equal to float64 precision, with the same shape and dtype; ``expected`` may be a torch tensor."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(actual, expected, strict=True, err_msg=what, **TOL)


def tensor(x: np.ndarray, requires_grad: bool = False):
    """A torch copy of ``x`` (never sharing memory with opreg's array)."""
    return torch.tensor(np.array(x), requires_grad=requires_grad)


# --- (a) the handout walkthrough -------------------------------------------------------------------------------


def walkthrough_arrays():
    x = np.array([[1.0, 2.0, 3.0]])
    W = np.array([[4.0, 5.0, 6.0]])
    b = np.array([[7.0, 8.0, 9.0]])
    return x, W, b


def walkthrough_torch():
    """y = x * W + b in torch; y.backward(ones): the gradients of x, W, b and h."""
    x, W, b = (tensor(a, requires_grad=True) for a in walkthrough_arrays())
    h = x * W
    h.retain_grad()
    y = h + b
    y.backward(torch.ones_like(y))
    return y, x.grad, W.grad, b.grad, h.grad


def check_walkthrough(engine, x, h, y, dW, db) -> None:
    t_y, t_dx, t_dW, t_db, t_dh = walkthrough_torch()
    assert_close(y, t_y, "y")
    assert_close(dW, t_dW, "dW")
    assert_close(db, t_db, "db")
    assert_close(engine.gradient_buffer.get_param(x), t_dx, "gradient of x")
    assert_close(engine.gradient_buffer.get_param(h), t_dh, "gradient of h")
    # The handout's hand-derived values: dW = x, db = 1, dx = W, dh = 1.
    np.testing.assert_array_equal(dW, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(db, [[1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(x), [[4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(h), [[1.0, 1.0, 1.0]])


def test_walkthrough_with_apply():
    """The handout example recorded through engine.apply: dW/db updated in place, x and h in the buffer."""
    x, W, b = walkthrough_arrays()
    dW, db = np.zeros_like(W), np.zeros_like(b)
    engine = opreg.Autograd()
    h = engine.apply("mul", x, W, gradients_to_update=[None, dW])
    y = engine.apply("add", h, b, gradients_to_update=[None, db])
    engine.backward(1)
    check_walkthrough(engine, x, h, y, dW, db)


def test_walkthrough_handout_style():
    """The handout example with NumPy forwards recorded by add_operation(inputs, output, gtu, name)."""
    x, W, b = walkthrough_arrays()
    dW, db = np.zeros_like(W), np.zeros_like(b)
    engine = opreg.Autograd()
    h = x * W
    engine.add_operation([x, W], h, [None, dW], "mul")
    y = h + b
    engine.add_operation([h, b], y, [None, db], "add")
    engine.backward(1)
    check_walkthrough(engine, x, h, y, dW, db)


# --- (b) Linear ------------------------------------------------------------------------------------------------


def torch_linear_like(layer: Linear):
    t = nn.Linear(layer.W.shape[1], layer.W.shape[0], dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.W))
        t.bias.copy_(torch.from_numpy(layer.b))
    return t


def test_linear_matches_torch():
    """Linear(7, 3) on a batch of 5: output, dW, db and the input's gradient equal torch.nn.Linear's."""
    rng = np.random.default_rng(0)
    engine = opreg.Autograd()
    layer = Linear(7, 3, engine, rng=rng)
    assert layer.W.shape == (3, 7) and layer.b.shape == (3,)
    x = rng.standard_normal((5, 7))
    g = rng.standard_normal((5, 3))
    t_layer, t_x = torch_linear_like(layer), tensor(x, requires_grad=True)

    y = layer(x)
    engine.backward(g)
    t_y = t_layer(t_x)
    t_y.backward(tensor(g))

    assert_close(y, t_y, "output")
    assert_close(layer.dW, t_layer.weight.grad, "dW")
    assert_close(layer.db, t_layer.bias.grad, "db")
    assert_close(engine.gradient_buffer.get_param(x), t_x.grad, "gradient of x")


def test_linear_gradients_accumulate_like_torch():
    """Two backward passes without zeroing dW/db add up as torch's .grad does; engine.zero_grad clears the tape."""
    rng = np.random.default_rng(1)
    engine = opreg.Autograd()
    layer = Linear(7, 3, engine, rng=rng)
    t_layer = torch_linear_like(layer)
    for _ in range(2):
        x, g = rng.standard_normal((5, 7)), rng.standard_normal((5, 3))
        engine.zero_grad()
        layer(x)
        engine.backward(g)
        t_layer(tensor(x)).backward(tensor(g))
    assert_close(layer.dW, t_layer.weight.grad, "dW")
    assert_close(layer.db, t_layer.bias.grad, "db")


@pytest.mark.parametrize("owned", [True, False], ids=["db-array", "buffer"])
@pytest.mark.parametrize("bias_shape", [(3,), (1, 3)], ids=["(n,)", "(1,n)"])
def test_bias_add_gradient_shapes(bias_shape, owned):
    """A bias of shape (n,) or (1, n) added to a (5, n) batch gets a gradient of its own shape: torch's batch sum."""
    rng = np.random.default_rng(2)
    xw = rng.standard_normal((5, 3))
    b = rng.standard_normal(bias_shape)
    g = rng.standard_normal((5, 3))
    db = np.zeros_like(b)
    engine = opreg.Autograd()
    y = engine.apply("add", xw, b, gradients_to_update=[None, db if owned else None])
    engine.backward(g)
    t_xw, t_b = tensor(xw, requires_grad=True), tensor(b, requires_grad=True)
    t_y = t_xw + t_b
    t_y.backward(tensor(g))

    assert_close(y, t_y, "output")
    bias_grad = db if owned else engine.gradient_buffer.get_param(b)
    assert bias_grad.shape == bias_shape
    assert_close(bias_grad, t_b.grad, "bias gradient")
    assert_close(engine.gradient_buffer.get_param(xw), t_xw.grad, "gradient of x @ W.T")


# --- (c) activation modules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [ReLU, Sigmoid, Tanh], ids=["ReLU", "Sigmoid", "Tanh"])
def test_activation_modules(module):
    """Each activation module's output and input gradient equal the torch module's (zeros in the input included)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6)) * 3
    x[0, :3] = 0.0
    g = rng.standard_normal((4, 6))
    engine = opreg.Autograd()
    y = module(engine)(x)
    engine.backward(g)
    t_x = tensor(x, requires_grad=True)
    t_y = getattr(nn, module.__name__)()(t_x)  # torch's module of the same name
    t_y.backward(tensor(g))
    assert_close(y, t_y, "output")
    assert_close(engine.gradient_buffer.get_param(x), t_x.grad, "gradient of x")


def test_identity_module():
    """Identity passes values and gradients through unchanged: checked inside a graph (Identity, then mul)."""
    rng = np.random.default_rng(4)
    x, c, g = (rng.standard_normal((4, 6)) for _ in range(3))
    engine = opreg.Autograd()
    h = Identity(engine)(x)
    y = engine.apply("mul", h, c)
    engine.backward(g)
    t_x = tensor(x, requires_grad=True)
    t_y = nn.Identity()(t_x) * tensor(c)
    t_y.backward(tensor(g))
    assert_close(h, x, "Identity output")
    assert_close(y, t_y, "output")
    assert_close(engine.gradient_buffer.get_param(x), t_x.grad, "gradient of x")


# --- (d) loss modules ------------------------------------------------------------------------------------------


def test_softmax_cross_entropy_module():
    """SoftmaxCrossEntropy(y, y_hat): loss and the logits' gradient equal nn.CrossEntropyLoss with class indices."""
    rng = np.random.default_rng(5)
    y_hat = rng.standard_normal((6, 4)) * 2
    classes = rng.integers(0, 4, size=6)
    y = np.eye(4)[classes]
    engine = opreg.Autograd()
    loss = SoftmaxCrossEntropy(engine)(y, y_hat)
    engine.backward(1.0)
    t_y_hat = tensor(y_hat, requires_grad=True)
    t_loss = nn.CrossEntropyLoss()(t_y_hat, torch.from_numpy(classes))
    t_loss.backward()
    assert_close(loss, t_loss, "loss")
    assert_close(engine.gradient_buffer.get_param(y_hat), t_y_hat.grad, "gradient of y_hat")


@pytest.mark.parametrize("shape", [(6, 1), (5, 3)])
def test_mse_loss_module(shape):
    """MSELoss(y, y_hat): loss and the prediction's gradient equal nn.MSELoss (mean over all elements)."""
    rng = np.random.default_rng(6)
    y_hat, y = rng.standard_normal(shape), rng.standard_normal(shape)
    engine = opreg.Autograd()
    loss = MSELoss(engine)(y, y_hat)
    engine.backward(1.0)
    t_y_hat = tensor(y_hat, requires_grad=True)
    t_loss = nn.MSELoss()(t_y_hat, tensor(y))
    t_loss.backward()
    assert_close(loss, t_loss, "loss")
    assert_close(engine.gradient_buffer.get_param(y_hat), t_y_hat.grad, "gradient of y_hat")


# --- (e) MLPs and SGD ------------------------------------------------------------------------------------------


def handout_case(rng):
    """[4, 8, 1]: Linear -> ReLU -> Linear -> Sigmoid, MSE against 0/1 targets."""
    x = rng.standard_normal((10, 4))
    y = rng.integers(0, 2, size=(10, 1)).astype(np.float64)
    return {
        "sizes": [4, 8, 1],
        "kwargs": {},
        "layer_types": [Linear, ReLU, Linear, Sigmoid],
        "torch_activations": [nn.ReLU, nn.Sigmoid],
        "criterion": MSELoss,
        "x": x,
        "y": y,
        "torch_loss": lambda out: nn.MSELoss()(out, tensor(y)),
    }


def deep_case(rng):
    """[6, 16, 8, 3]: ReLU between layers, Identity at the end, softmax cross-entropy on the logits."""
    x = rng.standard_normal((12, 6))
    classes = rng.integers(0, 3, size=12)
    return {
        "sizes": [6, 16, 8, 3],
        "kwargs": {"output_activation": Identity},
        "layer_types": [Linear, ReLU, Linear, ReLU, Linear, Identity],
        "torch_activations": [nn.ReLU, nn.ReLU, nn.Identity],
        "criterion": SoftmaxCrossEntropy,
        "x": x,
        "y": np.eye(3)[classes],
        "torch_loss": lambda out: nn.CrossEntropyLoss()(out, torch.from_numpy(classes)),
    }


def build_pair(case, seed: int = 0):
    """The opreg MLP and an equivalent torch.nn.Sequential holding copies of its weights."""
    engine = opreg.Autograd()
    mlp = MLP(case["sizes"], engine, rng=np.random.default_rng(seed), **case["kwargs"])
    assert [type(layer) for layer in mlp.layers] == case["layer_types"]
    linears = [layer for layer in mlp.layers if isinstance(layer, Linear)]
    torch_layers = []
    for linear, activation in zip(linears, case["torch_activations"], strict=True):
        torch_layers += [torch_linear_like(linear), activation()]
    return engine, mlp, linears, nn.Sequential(*torch_layers)


CASES = {"handout-4-8-1-mse": handout_case, "deep-6-16-8-3-xent": deep_case}


@pytest.mark.parametrize("make_case", CASES.values(), ids=CASES.keys())
def test_mlp_loss_and_gradients(make_case):
    """One forward/backward: the loss and every layer's dW and db equal torch's."""
    case = make_case(np.random.default_rng(10))
    engine, mlp, linears, t_model = build_pair(case)
    loss = case["criterion"](engine)(case["y"], mlp(case["x"]))
    engine.backward(1.0)
    t_loss = case["torch_loss"](t_model(tensor(case["x"])))
    t_loss.backward()
    assert_close(loss, t_loss, "loss")
    t_linears = [m for m in t_model if isinstance(m, nn.Linear)]
    for i, (linear, t_linear) in enumerate(zip(linears, t_linears, strict=True)):
        assert_close(linear.dW, t_linear.weight.grad, f"layer {i} dW")
        assert_close(linear.db, t_linear.bias.grad, f"layer {i} db")


@pytest.mark.parametrize("make_case", CASES.values(), ids=CASES.keys())
def test_mlp_sgd_steps(make_case):
    """Five SGD steps (lr 0.1) with opreg.optim.SGD and torch.optim.SGD: same losses and same weights after."""
    case = make_case(np.random.default_rng(11))
    engine, mlp, linears, t_model = build_pair(case, seed=1)
    criterion = case["criterion"](engine)
    optimizer = SGD(mlp.parameters(), lr=0.1)
    t_optimizer = torch.optim.SGD(t_model.parameters(), lr=0.1)
    initial = [linear.W.copy() for linear in linears]
    for step in range(5):
        optimizer.zero_grad()
        engine.zero_grad()
        loss = criterion(case["y"], mlp(case["x"]))
        engine.backward(1.0)
        optimizer.step()

        t_optimizer.zero_grad()
        t_loss = case["torch_loss"](t_model(tensor(case["x"])))
        t_loss.backward()
        t_optimizer.step()
        assert_close(loss, t_loss, f"loss at step {step}")

    t_linears = [m for m in t_model if isinstance(m, nn.Linear)]
    for i, (linear, t_linear) in enumerate(zip(linears, t_linears, strict=True)):
        assert_close(linear.W, t_linear.weight, f"layer {i} W after 5 steps")
        assert_close(linear.b, t_linear.bias, f"layer {i} b after 5 steps")
    assert any(not np.array_equal(W, linear.W) for W, linear in zip(initial, linears, strict=True)), "nothing moved"
