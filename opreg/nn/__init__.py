"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.conv import CNN, AvgPool2d, Conv2d, Flatten, MaxPool2d, Unflatten
from opreg.nn.linear import Linear
from opreg.nn.losses import MSELoss, SoftmaxCrossEntropy
from opreg.nn.module import BoundParameter, ModelFileError, Module, Parameter
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, Sequential
from opreg.nn.serialization import load, read_metadata, save

__all__ = [
    "CNN",
    "MLP",
    "AvgPool2d",
    "BoundParameter",
    "Conv2d",
    "Flatten",
    "Identity",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "ModelFileError",
    "Module",
    "NotUnaryOpError",
    "OpModule",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "Unflatten",
    "load",
    "read_metadata",
    "save",
    "unary_ops",
]
