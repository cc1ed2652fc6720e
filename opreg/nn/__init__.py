"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.linear import Linear
from opreg.nn.losses import MSELoss, SoftmaxCrossEntropy
from opreg.nn.module import BoundParameter, ModelFileError, Module, Parameter
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, Sequential
from opreg.nn.serialization import load, read_metadata, save
from opreg.nn.utils import NonFiniteNormError, clip_grad_norm_, clip_grad_value_

__all__ = [
    "MLP",
    "BoundParameter",
    "Identity",
    "Linear",
    "MSELoss",
    "ModelFileError",
    "Module",
    "NonFiniteNormError",
    "NotUnaryOpError",
    "OpModule",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "clip_grad_norm_",
    "clip_grad_value_",
    "load",
    "read_metadata",
    "save",
    "unary_ops",
]
