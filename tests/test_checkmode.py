"""Checking mode: every recorded op's results validated, only while it is on, and nothing left behind after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import opreg
from opreg import OpContractError, checkmode
from opreg.checkmode import CHECK_VAR
from opreg.registry import op_table


def upcasting(name: str = "upcast") -> dict:
    """An op whose backward turns float32 gradients into float64: not an error, but what checking mode finds."""
    return {
        "name": name,
        "inputs": ("x",),
        "forward": lambda x: 2 * x,
        "backward": lambda g, x: (2.0 * g.astype("f8"),),
    }


def run(name: str) -> None:
    engine = opreg.Autograd()
    engine.apply(name, np.ones(3, dtype=np.float32))
    engine.backward(1.0)


def test_checking_finds_a_dtype_change_that_normal_runs_let_through(install_ops):
    if checkmode.enabled_by_environment():
        pytest.skip(f"{CHECK_VAR} is set: there is no normal run to compare with")
    install_ops(upcasting(), name="sloppy")
    run("upcast")
    with opreg.checking(), pytest.raises(OpContractError, match=r"op 'upcast' \(plugin 'sloppy'\).*dtype float64"):
        run("upcast")


def test_checking_finds_inputs_modified_in_place(install_ops):
    def scale_in_place(x):
        x *= 2
        return x.copy()

    install_ops({"name": "scale", "inputs": ("x",), "forward": scale_in_place, "backward": lambda g, x: (2 * g,)})
    with opreg.checking(), pytest.raises(OpContractError, match="op 'scale'.*forward: input 0 'x' was modified"):
        run("scale")


def test_checking_leaves_the_op_table_alone_and_other_threads_unchecked(install_ops):
    """Checking mode observes op calls in its own thread; the registry's table is never rewritten."""
    install_ops(upcasting(), name="sloppy")
    before = dict(op_table())
    outcome: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            run("upcast")
            outcome.append(None)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    with opreg.checking():
        assert all(op_table()[name] is op for name, op in before.items())
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        with pytest.raises(OpContractError, match="op 'upcast'"):
            run("upcast")
    assert outcome == [None] or checkmode.enabled_by_environment()
    run("exp")


def test_the_environment_variable_checks_a_whole_run(tmp_path):
    """OPREG_CHECK=1 checks every op of the process, in-process plugins too, from the first import on."""
    script = tmp_path / "sloppy.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import opreg

            class Sloppy:
                @opreg.hookimpl
                def opreg_register_ops(self, register):
                    register(name="upcast", inputs=("x",), forward=lambda x: 2 * x,
                             backward=lambda g, x: (2.0 * g.astype("f8"),))

            opreg.register_plugin(Sloppy())
            engine = opreg.Autograd()
            engine.apply("upcast", np.ones(3, dtype=np.float32))
            engine.backward(1.0)
            """
        )
    )
    environment = {**os.environ, CHECK_VAR: "1"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment, check=False)
    assert result.returncode != 0 and "OpContractError: op 'upcast'" in result.stderr
    environment[CHECK_VAR] = "0"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, result.stderr


def test_an_op_that_hangs_is_an_error_naming_it_and_where_it_was(install_ops, monkeypatch):
    """With a timeout, a forward that never returns becomes an error, and opreg goes on working."""

    def stuck(x):
        while True:
            time.sleep(0.01)

    install_ops({"name": "stuck", "inputs": ("x",), "forward": stuck, "backward": lambda g, x: (g,)}, name="stuck-ops")
    hung = (
        r"(?s)op 'stuck' \(plugin 'stuck-ops'\): forward did not finish within 0.2 s \(OPREG_OP_TIMEOUT\); it may "
        r"hang\. It was at:.*in stuck\n.*time\.sleep"
    )
    with pytest.raises(OpContractError, match=hung), opreg.checking(timeout=0.2):
        opreg.ops.stuck(np.ones(2))
    monkeypatch.setenv("OPREG_OP_TIMEOUT", "0.2")
    with opreg.checking(), pytest.raises(OpContractError, match="did not finish within 0.2 s"):
        opreg.Autograd().apply("stuck", np.ones(2))
    assert opreg.ops.exp(np.zeros(1)).item() == 1.0
