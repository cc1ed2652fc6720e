"""Optimizers and learning-rate schedulers with PyTorch's arguments, update rules and state dicts.

``from opreg.optim import SGD, Adam, AdamW, RMSprop, Adagrad`` and ``opreg.optim.lr_scheduler.StepLR`` etc., as
``torch.optim``; see :mod:`opreg.optim.optimizer` for parameter groups and state dicts.
"""

from opreg.optim import lr_scheduler
from opreg.optim.optimizer import Optimizer
from opreg.optim.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
