"""msgpass: backpropagation as explicit message passing, proven equal to standard backprop.

>>> import msgpass as mp
>>> net = mp.Sequential([mp.Affine(4, 8, seed=0), mp.ReLU(), mp.Affine(8, 3, seed=1),
...                      mp.SoftmaxCrossEntropy()])
"""

from . import data, init, optim
from .compare import Tolerance, compare
from .errors import (
    DataError,
    DtypeError,
    GraphError,
    InputValueError,
    MsgpassError,
    NonFiniteError,
    ShapeError,
    SpecError,
    StateError,
)
from .graph import Graph, GraphTrace, Node, copy, exp, log, maximum, relu, sigmoid, tanh
from .layers import (
    Affine,
    BatchNorm,
    DerivativeWarning,
    Dropout,
    Function,
    JacobianCheck,
    Layer,
    LogSoftmax,
    LossLayer,
    MSELoss,
    NLLLoss,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from .messages import MessageBlock
from .network import Sequential
from .numbers import as_numbers
from .partials import Dense, Diagonal, Elementwise, LocalPartials, Outer, Shared
from .spec import DEFAULT_SPEC, build_network
from .trace import Trace
from .train import History, evaluate, load_checkpoint, save_checkpoint, train
from .verify import Report, verify
from .witnesses import backprop, numeric_gradients, numeric_witness

__version__ = "0.8.0"


def load_trace(path, network=None):
    """A trace saved with ``trace.save(path)`` (or streamed by ``backward(store=path)``) as a
    lazy xarray Dataset (msgpass[scale]); with ``network``, refuse another architecture's."""
    from .scale import load_trace as load
    return load(path, network=network)

def append_trace(trace, path, step: int, chunk_samples: int = 256):
    """Append a trace to the zarr store at ``path`` along a ``step`` dimension, creating it
    on the first call (msgpass[scale]; see msgpass.scale.append_trace)."""
    from .scale import append_trace as append
    return append(trace, path, step, chunk_samples=chunk_samples)


__all__ = [
    "Affine", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "SoftmaxCrossEntropy",
    "NLLLoss", "MSELoss", "Layer", "LossLayer", "Dropout", "BatchNorm", "Function", "JacobianCheck",
    "DerivativeWarning",
    "Sequential", "Trace", "as_numbers", "load_trace", "append_trace", "train", "evaluate",
    "History",
    "save_checkpoint", "load_checkpoint", "data", "optim", "init", "MessageBlock",
    "build_network", "DEFAULT_SPEC",
    "Graph", "GraphTrace", "Node", "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy",
    "Shared", "Diagonal", "Dense", "Outer", "Elementwise", "LocalPartials",
    "backprop", "numeric_gradients", "numeric_witness", "verify", "Report",
    "Tolerance", "compare",
    "MsgpassError", "ShapeError", "InputValueError", "DtypeError", "StateError",
    "NonFiniteError", "SpecError", "GraphError", "DataError",
]
