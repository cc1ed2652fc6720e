"""Modules assembled from registered ops: Linear, activations, losses and the MLP."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.linear import Linear
from opreg.nn.losses import MSELoss, SoftmaxCrossEntropy
from opreg.nn.mlp import MLP
from opreg.nn.module import Module, Parameter

__all__ = [
    "MLP",
    "Identity",
    "Linear",
    "MSELoss",
    "Module",
    "Parameter",
    "ReLU",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
]
