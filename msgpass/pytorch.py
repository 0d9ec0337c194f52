"""PyTorch modules in and out: ``from_torch`` traces a module with torch.fx and maps each node
onto a msgpass layer or graph op; ``to_torch`` gives the module back with msgpass's weights.

A chain with a loss becomes a Sequential, anything else a Graph (residual adds, products,
torch.cat, x[:, ...] slices, several uses of one value; or no loss, when backward takes a
seed). Weights are copied; ``model.params`` and every trace's ``grads`` are keyed by torch's
names in torch's shapes (``model.param_names``, msgpass.naming), and ``trace.grad`` takes the
forward's argument name for ∂L/∂x. torch's losses are computed exactly as torch computes them
(msgpass.layers.Rescaled), BatchNorm with torch's conventions. What is not supported is
refused by name, never half imported. torch itself is imported only when these are called
(the optional extra ``msgpass[torch]``).
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import MsgpassError
from .layers import (
    Affine,
    AvgPool2d,
    BatchNorm,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    LogSoftmax,
    MaxPool2d,
    MSELoss,
    NLLLoss,
    ReLU,
    Rescaled,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from .network import Sequential

__all__ = ["from_torch", "to_torch", "TorchImportError"]


_SHAPE = object()    # what x.size(0) or x.shape stands for: a size, read only by reshapes


class TorchImportError(MsgpassError):
    """A module msgpass cannot import: it names the op, its fx node and module path."""


def _torch():
    try:
        import torch
    except ImportError:
        raise TorchImportError("from_torch needs PyTorch: pip install 'msgpass[torch]' (or "
                               "pip install torch)") from None
    return torch


def _array(tensor, dtype) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(dtype, copy=True)


def _module_layer(module, node, dtype):
    """(layer, {torch param name suffix: (msgpass param name, transposed)}) for an nn module."""
    torch = _torch()
    nn = torch.nn
    if isinstance(module, nn.Linear):
        layer = Affine(module.in_features, module.out_features, bias=module.bias is not None,
                       dtype=dtype)
        layer.params["W"][...] = _array(module.weight, dtype).T
        names = {"weight": ("W", True)}
        if module.bias is not None:
            layer.params["b"][...] = _array(module.bias, dtype)
            names["bias"] = ("b", False)
        return layer, names
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or tuple(module.dilation) != (1, 1) or \
                module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise _unsupported(node, "Conv2d with groups, dilation, string padding or a "
                                     "padding mode other than zeros")
        layer = Conv2d(module.in_channels, module.out_channels, tuple(module.kernel_size),
                       tuple(module.stride), tuple(module.padding),
                       bias=module.bias is not None, dtype=dtype)
        layer.params["W"][...] = _array(module.weight, dtype)
        names = {"weight": ("W", False)}
        if module.bias is not None:
            layer.params["b"][...] = _array(module.bias, dtype)
            names["bias"] = ("b", False)
        return layer, names
    if isinstance(module, nn.MaxPool2d):
        if module.dilation not in (1, (1, 1)) or module.ceil_mode or module.return_indices:
            raise _unsupported(node, "MaxPool2d with dilation, ceil_mode or return_indices")
        return MaxPool2d(module.kernel_size, module.stride, module.padding), {}
    if isinstance(module, nn.AvgPool2d):
        if module.padding not in (0, (0, 0)) or module.ceil_mode:
            raise _unsupported(node, "AvgPool2d with padding or ceil_mode")
        return AvgPool2d(module.kernel_size, module.stride), {}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if module.output_size not in (1, (1, 1)):
            raise _unsupported(node, "AdaptiveAvgPool2d other than (1, 1)")
        return GlobalAvgPool2d(), {}
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise _unsupported(node, "Flatten other than flatten(1)")
        return Flatten(), {}
    simple = {nn.ReLU: ReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh}
    for kind, made in simple.items():
        if isinstance(module, kind):
            return made(), {}
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        if module.dim not in (1, -1):
            raise _unsupported(node, f"{type(module).__name__} over dim {module.dim}")
        return (Softmax() if isinstance(module, nn.Softmax) else LogSoftmax()), {}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not module.affine or not module.track_running_stats or module.momentum is None:
            raise _unsupported(node, "BatchNorm without affine parameters, running "
                                     "statistics or a momentum")
        made = BatchNorm if isinstance(module, nn.BatchNorm1d) else BatchNorm2d
        layer = made(module.num_features, momentum=1 - module.momentum, eps=module.eps,
                     dtype=dtype, unbiased_running_var=True)
        layer.params["gamma"][...] = _array(module.weight, dtype)
        layer.params["beta"][...] = _array(module.bias, dtype)
        layer.running_mean = _array(module.running_mean, np.float64)
        layer.running_var = _array(module.running_var, np.float64)
        layer.training = module.training
        return layer, {"weight": ("gamma", False), "bias": ("beta", False)}
    if isinstance(module, (nn.Dropout, nn.Identity)):
        if isinstance(module, nn.Dropout) and module.training and module.p > 0:
            raise _unsupported(node, "Dropout in training mode (its masks are torch's random "
                                     "draws): call module.eval() first")
        return None, {}
    raise _unsupported(node, type(module).__name__)


def _function_layer(node):
    """The layer a call_function or call_method node stands for (None: the identity)."""
    torch = _torch()
    F = torch.nn.functional
    target = node.target
    if target in (F.relu, torch.relu, "relu"):
        return ReLU()
    if target in (torch.tanh, "tanh"):
        return Tanh()
    if target in (torch.sigmoid, "sigmoid"):
        return Sigmoid()
    if target in (torch.flatten, "flatten") and (node.args[1:] or node.kwargs.get(
            "start_dim")) in ((1,), 1):
        return Flatten()
    if target in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1:
        return Flatten()
    if target is F.adaptive_avg_pool2d and node.args[1:] in ((1,), ((1, 1),)):
        return GlobalAvgPool2d()
    if target in (torch.reshape,) and len(node.args) == 2 and \
            isinstance(node.args[1], tuple) and len(node.args[1]) == 2 and node.args[1][1] == -1:
        return Flatten()
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if target in (F.softmax, torch.softmax, "softmax") and dim in (1, -1):
        return Softmax()
    if target in (F.log_softmax, torch.log_softmax, "log_softmax") and dim in (1, -1):
        return LogSoftmax()
    if target is F.dropout and not node.kwargs.get("training", True):
        return None                                          # eval: the identity
    pooled = {F.max_pool2d: MaxPool2d, F.avg_pool2d: AvgPool2d}.get(target)
    if pooled is not None:
        options = dict(zip(("kernel_size", "stride", "padding"), node.args[1:], strict=False))
        options.update(node.kwargs)
        if pooled is AvgPool2d and options.pop("padding", 0) not in (0, (0, 0)):
            raise _unsupported(node, "avg_pool2d with padding")
        if options.get("ceil_mode") or options.get("dilation", 1) not in (1, (1, 1)):
            raise _unsupported(node, "pooling with ceil_mode or dilation")
        options = {k: v for k, v in options.items() if k in ("kernel_size", "stride",
                                                                "padding")}
        return pooled(**options)
    raise _unsupported(node, getattr(target, "__name__", str(target)))


def _unsupported(node, what: str) -> TorchImportError:
    return TorchImportError(
        f"cannot import {what} (fx node {node.name!r}, {node.op} {node.target!r}); supported: "
        f"Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d((1, 1)), Flatten / flatten / "
        f"view(B, -1) / reshape(B, -1), ReLU, Sigmoid, Tanh, Softmax, LogSoftmax (dim 1), "
        f"BatchNorm1d/2d, Dropout (eval), Identity, +, *, torch.cat, x[:, ...] slices, and "
        f"their functional and tensor-method forms")


def _loss_layer(loss):
    """torch's loss as a msgpass loss layer computing exactly its value: CrossEntropyLoss and
    NLLLoss are per-sample means already, MSELoss the mean over all B·N entries with no ½;
    reduction "sum" multiplies by B."""
    torch = _torch()
    nn = torch.nn
    if loss is None:
        return None
    kinds = {nn.CrossEntropyLoss: (SoftmaxCrossEntropy, 1, False),
             nn.NLLLoss: (NLLLoss, 1, False), nn.MSELoss: (MSELoss, 2, True)}
    for kind, (made, factor, per_width) in kinds.items():
        if isinstance(loss, kind):
            if loss.reduction not in ("mean", "sum") or \
                    getattr(loss, "weight", None) is not None or \
                    getattr(loss, "label_smoothing", 0.0) or \
                    getattr(loss, "ignore_index", -100) != -100:
                raise TorchImportError(f"{loss!r}: only reduction 'mean' or 'sum', without "
                                       f"class weights, label smoothing or ignore_index")
            if factor == 1 and loss.reduction == "mean":
                return made()
            return Rescaled(made(), factor, per_batch=loss.reduction == "sum",
                            per_width=per_width and loss.reduction == "mean")
    raise TorchImportError(f"cannot import the loss {loss!r}: nn.CrossEntropyLoss, "
                           f"nn.NLLLoss or nn.MSELoss")


def _is_chain(traced, fx) -> bool:
    """One input, and every other node reads exactly the node before it, once."""
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return False
    previous = placeholders[0]
    for node in traced.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if inputs != [previous] or len(node.users) != 1 or any(
                isinstance(a, (list, tuple)) for a in node.args):
            return False
        previous = node
    return True


def from_torch(module, example_input, loss=None, dtype="float64"):
    """A msgpass model that computes what ``module`` computes, with its weights copied: a
    Sequential when the traced module is a chain, a Graph otherwise."""
    torch = _torch()
    from torch import fx
    dtype = np.dtype(dtype)
    try:
        traced = fx.symbolic_trace(module)
    except Exception as err:  # fx raises TraceError and plain errors alike
        raise TorchImportError(f"torch.fx could not trace {type(module).__name__} "
                               f"symbolically: {err}") from None
    example = np.asarray(example_input.detach().cpu().numpy() if isinstance(
        example_input, torch.Tensor) else example_input, dtype=dtype)
    if loss is not None and _is_chain(traced, fx):
        return _chain(traced, example, loss, dtype, module)
    # not a chain, or no loss (then backward takes a seed, as Graph.backward): a Graph
    return _graph(traced, example, loss, dtype, fx, module)


def _chain(traced, example, loss, dtype, module) -> Sequential:
    layers, torch_names, modules = [], {}, {}
    for node in traced.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module":
            layer, names = _module_layer(traced.get_submodule(node.target), node, dtype)
        else:
            layer, names = _function_layer(node), {}
        if layer is not None:
            layers.append(layer)
            if node.op == "call_module":
                modules[node.target] = layer
            for suffix, (name, transposed) in names.items():
                torch_names[f"{node.target}.{suffix}"] = (f"{len(layers)}.{name}", transposed)
    layers.append(_loss_layer(loss))
    shape = tuple(example.shape[1:])
    net = Sequential(layers, dtype=dtype, input_shape=shape if len(shape) == 3 else None)
    # params and gradients under torch's names, in torch's shapes
    net.param_names = {key: (name, transposed) for name, (key, transposed) in
                       torch_names.items()}
    net.input_name = next(n.target for n in traced.graph.nodes if n.op == "placeholder")
    _remember(net, module, modules, loss)
    return net


def _graph(traced, example, loss, dtype, fx, module):
    """A Graph of layer nodes and ops, one per fx node."""
    import operator

    from .graph import Graph, concat, take
    torch = _torch()
    graph, made, torch_names, modules = Graph(), {}, {}, {}
    output = None

    def arg(value):
        return made[value.name] if isinstance(value, fx.Node) else value

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            made[node.name] = graph.input(node.target, example)
            if example.ndim > 2:
                graph.input_shapes[node.target] = tuple(example.shape[1:])
        elif node.target == "size" or (node.op == "call_function" and node.target is getattr):
            made[node.name] = _SHAPE            # x.size(0), x.shape: only read by reshapes
        elif node.op == "call_function" and node.target is operator.getitem and \
                made.get(getattr(node.args[0], "name", None)) is _SHAPE:
            made[node.name] = _SHAPE
        elif node.op == "call_module":
            sub = traced.get_submodule(node.target)
            if node.target in modules and (any(True for _ in sub.parameters())
                                           or any(True for _ in sub.buffers())):
                raise _unsupported(node, f"a second call of module {node.target!r} (its "
                                         f"weights shared between calls)")
            layer, names = _module_layer(traced.get_submodule(node.target), node, dtype)
            source = arg(node.args[0])
            made[node.name] = source if layer is None else layer(source)
            if layer is not None:
                modules[node.target] = layer
            for suffix, (name, transposed) in names.items():
                torch_names[f"{node.target}.{suffix}"] = (f"{made[node.name].name}.{name}",
                                                          transposed)
        elif node.target in (operator.add, torch.add, "add"):
            made[node.name] = arg(node.args[0]) + arg(node.args[1])
        elif node.target in (operator.mul, torch.mul, "mul"):
            made[node.name] = arg(node.args[0]) * arg(node.args[1])
        elif node.target is torch.cat:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if dim < 1:
                raise _unsupported(node, f"torch.cat over dim {dim} (the batch)")
            made[node.name] = concat([arg(a) for a in node.args[0]], axis=dim - 1)
        elif node.target is operator.getitem:
            index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
            if not index or index[0] != slice(None):
                raise _unsupported(node, f"indexing {index!r} that is not x[:, ...]")
            made[node.name] = take(arg(node.args[0]), index[1:])
        elif node.op == "output":
            output = arg(node.args[0])
        else:
            layer = _function_layer(node)
            source = arg(node.args[0])
            made[node.name] = source if layer is None else layer(source)
    last = _loss_layer(loss)
    if last is not None:
        output = last(output)
        graph.default_seed = "mean"     # backward and verify: the batch mean's gradient
    graph.param_names = {key: (name, transposed) for name, (key, transposed) in
                         torch_names.items()}
    graph.torch_output = output.name
    _remember(graph, module, modules, loss)
    return graph


def _remember(model, module, modules, loss) -> None:
    """What ``to_torch`` needs: a copy of the module as imported, of its own class (weights are
    filled in from msgpass when exporting), which msgpass layer each of its modules became,
    and the loss."""
    import copy
    model.torch_module = copy.deepcopy(module)
    model.torch_layers = modules
    model.torch_loss = copy.deepcopy(loss)
    # model.to_torch(): the verify witness "torch" exports through it, without importing this
    # module (it sits at the same rank)
    model.to_torch = functools.partial(to_torch, model)


def to_torch(model):
    """A torch module computing what ``model`` computes now, with its (possibly trained)
    weights and running statistics: for a model made by ``from_torch``, a copy of the module
    it came from (as traced by torch.fx) with msgpass's current values copied in."""
    torch = _torch()
    template = getattr(model, "torch_module", None)
    if template is None:
        raise TorchImportError("to_torch exports models made by mp.from_torch (this one was "
                               "built in msgpass)")
    import copy
    module = copy.deepcopy(template)
    # in msgpass's precision (an imported float32 module comes back float64 unless the model
    # was imported with dtype="float32")
    arrays = list(model.params.values())
    if arrays:
        module = module.to({np.dtype(np.float64): torch.float64,
                            np.dtype(np.float32): torch.float32}[arrays[0].dtype])
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name, array in model.params.items():
            target = parameters[name]
            target.copy_(torch.as_tensor(np.ascontiguousarray(array), dtype=target.dtype))
        for path, layer in model.torch_layers.items():
            if isinstance(layer, BatchNorm):              # BatchNorm2d too: its subclass
                sub = module.get_submodule(path)
                sub.running_mean.copy_(torch.as_tensor(layer.running_mean))
                sub.running_var.copy_(torch.as_tensor(layer.running_var))
                sub.train(layer.training)
    return module
