"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP,
and the layers Dropout, LayerNorm, BatchNorm1d, BatchNorm2d, Embedding."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.dropout import Dropout
from opreg.nn.embedding import Embedding
from opreg.nn.layer_errors import EmbeddingIndexError, LayerError
from opreg.nn.linear import Linear
from opreg.nn.losses import MSELoss, SoftmaxCrossEntropy
from opreg.nn.module import BoundParameter, IncompatibleKeys, ModelFileError, Module, ModuleInitError, Parameter
from opreg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, ArchitectureError, ModuleList, Sequential
from opreg.nn.serialization import load, load_model, read_metadata, register_model, save

__all__ = [
    "MLP",
    "ArchitectureError",
    "BatchNorm1d",
    "BatchNorm2d",
    "BoundParameter",
    "Dropout",
    "Embedding",
    "EmbeddingIndexError",
    "Identity",
    "IncompatibleKeys",
    "LayerError",
    "LayerNorm",
    "Linear",
    "MSELoss",
    "ModelFileError",
    "Module",
    "ModuleInitError",
    "ModuleList",
    "NotUnaryOpError",
    "OpModule",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "load",
    "load_model",
    "read_metadata",
    "register_model",
    "save",
    "unary_ops",
]
