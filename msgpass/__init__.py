"""msgpass: backpropagation as explicit message passing, proven equal to standard backprop.

>>> import msgpass as mp
>>> net = mp.Sequential([mp.Affine(4, 8, seed=0), mp.ReLU(), mp.Affine(8, 3, seed=1),
...                      mp.SoftmaxCrossEntropy()])

Glossary: one name in the code for each quantity of the mathematics (DESIGN.md §1).

==========================  ====================================================================
maths                       code
==========================  ====================================================================
z^t                         ``values`` (``trace.value(t)``), shape (B, N_t)
J^t[n, n'] = ∂_n g^t_{n'}   input partials: an ``InputPartials`` of one kind (msgpass.partials),
                            ``local.inputs``; ``J`` in the message code
K^t[i, n']                  parameter partials: a ``ParamPartials``, ``local.params[name]``;
                            ``K`` in the message code
J^t and K^t of one layer    ``LocalPartials`` (``local_partials`` of a layer, ``trace.partials``)
δ^t_{n←n'}                  a ``message``; all of layer t's: a ``MessageBlock``
                            (``trace.block(t)``, dense ``trace.message(t)``)
S^t_n = Σ_{n'} δ^t_{n←n'}   ``incoming`` (``trace.incoming(t)``): what arrived at node n of layer
                            t−1 and was summed; S^{T+1} = 1/B is the seed
∂L/∂θ                       ``grads``
L = (1/B) Σ_b ℓ_b           the loss: the batch mean of the samples' losses; ``MSELoss``'s
                            ℓ_b = ½ Σ_n (y_bn − t_bn)² is a sum of squares (2乗和誤差), not a mean
the classic backward        ``dout``, ``dx``, ``dW`` in each layer's ``backward``
==========================  ====================================================================

The layout of the package is in README.md ("Layout"); module paths of 0.8 that moved still
import (msgpass._moved).
"""

from . import _moved
from . import scale as _scale  # noqa: F401  (plugs trace.save, to_xarray, the dask backend in)
from . import view as _view  # noqa: F401  (plugs to_html, to_dot, the notebook display in)
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
from .graph import (
    Graph,
    GraphTrace,
    Node,
    abs,
    copy,
    cos,
    elementwise,
    exp,
    expm1,
    log,
    log1p,
    matmul,
    maximum,
    mean,
    minimum,
    relu,
    sigmoid,
    sin,
    softplus,
    sqrt,
    square,
    sum,
    tanh,
    where,
)
from .layers import (
    Affine,
    AvgPool2d,
    BatchNorm,
    BatchNorm2d,
    Conv2d,
    DerivativeWarning,
    Dropout,
    Flatten,
    Function,
    GlobalAvgPool2d,
    JacobianCheck,
    Layer,
    LogSoftmax,
    LossLayer,
    MaxPool2d,
    MSELoss,
    NLLLoss,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from .layers import initializers as init
from .messages import MessageBlock
from .network import Sequential
from .numbers import as_numbers
from .partials import Dense, Diagonal, Elementwise, LocalPartials, Outer, Shared
from .pytorch import from_torch, to_torch  # torch itself is imported only when called
from .spec import DEFAULT_SPEC, build_network
from .trace import Trace
from .training import (
    History,
    data,
    evaluate,
    load_checkpoint,
    optim,
    save_checkpoint,
    train,
)
from .verification import Report, Tolerance, verify
from .verification.compare import compare
from .witnesses import backprop, numeric_gradients, numeric_witness

__version__ = "0.13.0"


def __getattr__(name):
    # mp.draw without importing matplotlib at `import msgpass`: loaded on first use
    if name == "draw":
        import importlib
        return importlib.import_module(".draw", __name__)
    raise AttributeError(f"module 'msgpass' has no attribute {name!r}")


_moved.install()   # old module paths keep importing (last: it aliases what was imported)


def load_trace(path, network=None):
    """A trace saved with ``trace.save(path)`` (or streamed by ``backward(store=path)``) as a
    lazy xarray Dataset (msgpass[scale]); with ``network``, refuse another architecture's."""
    return _scale.load_trace(path, network=network)


def append_trace(trace, path, step: int, chunk_samples: int = 256):
    """Append a trace to the zarr store at ``path`` along a ``step`` dimension, creating it
    on the first call (msgpass[scale]; see msgpass.scale.append_trace)."""
    return _scale.append_trace(trace, path, step, chunk_samples=chunk_samples)


__all__ = [
    "Affine", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "SoftmaxCrossEntropy",
    "NLLLoss", "MSELoss", "Layer", "LossLayer", "Dropout", "BatchNorm", "Function", "JacobianCheck",
    "DerivativeWarning", "from_torch", "to_torch", "Conv2d", "MaxPool2d", "AvgPool2d",
    "GlobalAvgPool2d", "Flatten",
    "BatchNorm2d",
    "Sequential", "Trace", "as_numbers", "load_trace", "append_trace", "train", "evaluate",
    "History",
    "save_checkpoint", "load_checkpoint", "data", "optim", "init", "MessageBlock",
    "build_network", "DEFAULT_SPEC",
    "Graph", "GraphTrace", "Node", "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy",
    "sin", "cos", "sqrt", "abs", "softplus", "log1p", "expm1", "square", "minimum", "where",
    "sum", "mean", "matmul", "elementwise",
    "Shared", "Diagonal", "Dense", "Outer", "Elementwise", "LocalPartials",
    "backprop", "numeric_gradients", "numeric_witness", "verify", "Report",
    "Tolerance", "compare",
    "MsgpassError", "ShapeError", "InputValueError", "DtypeError", "StateError",
    "NonFiniteError", "SpecError", "GraphError", "DataError",
]
