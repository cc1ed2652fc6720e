"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP,
and the layers Dropout, LayerNorm, BatchNorm1d, BatchNorm2d, Embedding."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.dropout import Dropout
from opreg.nn.embedding import Embedding
from opreg.nn.layer_errors import EmbeddingIndexError, LayerError
from opreg.nn.linear import Linear
from opreg.nn.losses import MSELoss, SoftmaxCrossEntropy
from opreg.nn.module import BoundParameter, ModelFileError, Module, Parameter
from opreg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, Sequential
from opreg.nn.serialization import load, read_metadata, save

__all__ = [
    "MLP",
    "BatchNorm1d",
    "BatchNorm2d",
    "BoundParameter",
    "Dropout",
    "Embedding",
    "EmbeddingIndexError",
    "Identity",
    "LayerError",
    "LayerNorm",
    "Linear",
    "MSELoss",
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
    "load",
    "read_metadata",
    "save",
    "unary_ops",
]
