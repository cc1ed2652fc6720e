"""Modules assembled from registered ops: Linear, any op as a module (OpModule), activations, losses, the MLP,
and the layers Dropout, LayerNorm, BatchNorm1d, BatchNorm2d, Embedding."""

from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.conv import CNN, AvgPool2d, Conv2d, Flatten, MaxPool2d, Unflatten
from opreg.nn.dropout import Dropout
from opreg.nn.embedding import Embedding
from opreg.nn.layer_errors import EmbeddingIndexError, LayerError
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
from opreg.nn.module import BoundParameter, IncompatibleKeys, ModelFileError, Module, ModuleInitError, Parameter
from opreg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from opreg.nn.op_module import NotUnaryOpError, OpModule, unary_ops
from opreg.nn.sequential import MLP, ArchitectureError, ModuleList, Sequential
from opreg.nn.serialization import load, load_model, read_metadata, register_model, save
from opreg.nn.utils import NonFiniteNormError, clip_grad_norm_, clip_grad_value_

__all__ = [
    "CNN",
    "MLP",
    "ArchitectureError",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "BoundParameter",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "EmbeddingIndexError",
    "Flatten",
    "HuberLoss",
    "Identity",
    "IncompatibleKeys",
    "L1Loss",
    "LayerError",
    "LayerNorm",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "ModelFileError",
    "Module",
    "ModuleInitError",
    "ModuleList",
    "NLLLoss",
    "NonFiniteNormError",
    "NotUnaryOpError",
    "OpModule",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "Unflatten",
    "clip_grad_norm_",
    "clip_grad_value_",
    "load",
    "load_model",
    "read_metadata",
    "register_model",
    "save",
    "unary_ops",
]
