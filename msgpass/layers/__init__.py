"""The layers: one class per kind, forward / local partials / classic backward side by side."""

from .affine import Affine
from .base import Layer, LossLayer
from .batchnorm import BatchNorm, BatchNorm2d
from .conv import Conv2d
from .elementwise import Dropout, ReLU, Sigmoid, Tanh
from .function import DerivativeWarning, Function, JacobianCheck
from .losses import MSELoss, NLLLoss, Rescaled, SoftmaxCrossEntropy
from .pooling import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d
from .softmax import LogSoftmax, Softmax

__all__ = [
    "Layer", "LossLayer", "Affine", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "SoftmaxCrossEntropy", "NLLLoss", "MSELoss", "Dropout", "BatchNorm", "Function",
    "JacobianCheck", "DerivativeWarning", "Conv2d", "MaxPool2d", "AvgPool2d",
    "GlobalAvgPool2d", "Flatten", "BatchNorm2d", "Rescaled",
]
