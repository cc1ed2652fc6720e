"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.linear import Linear
from opreg.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SoftmaxCrossEntropy,
)
from opreg.nn.module import BoundParameter, ModelFileError, Module, Parameter
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, Sequential
from opreg.nn.serialization import load, read_metadata, save

__all__ = [
    "MLP",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BoundParameter",
    "CrossEntropyLoss",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "Linear",
    "MSELoss",
    "ModelFileError",
    "Module",
    "NLLLoss",
    "NotUnaryOpError",
    "OpModule",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "load",
    "read_metadata",
    "save",
    "unary_ops",
]
