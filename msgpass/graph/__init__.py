"""Graphs beyond chains: multi-input nodes, fan-out, expression graphs (issue 4).

graph.py builds and evaluates a Graph; node.py has its nodes and the expressions written with
them (and numpy's ufuncs on them); ops.py the operations of one or two inputs, unary.py the
elementwise functions (sin, softplus, ... and custom ones), reductions.py sum, mean and the
matrix product; backward.py the message pass (DAG view) and its GraphTrace; layered.py the
same pass as a chain of levels; forward.py forward-mode and second-order messages (jvp,
jacobian, hvp).
"""

from .backward import GraphEdge, GraphTrace, graph_backward
from .graph import Graph, GraphForward
from .layered import LayeredView, layered_view, levels_of
from .node import (
    UFUNCS,
    Condition,
    Node,
    abs,
    concat,
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
    take,
    tanh,
    where,
)
from .ops import (
    Add,
    Div,
    Exp,
    Identity,
    LayerOp,
    Log,
    Max,
    Mul,
    Op,
    OpPartials,
    Pow,
    Reciprocal,
    Scale,
    Sub,
)
from .unary import CustomElementwise, Unary

__all__ = [
    "Graph", "GraphForward", "Node", "GraphTrace", "GraphEdge", "LayeredView", "graph_backward",
    "layered_view", "levels_of",
    "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy", "concat", "take",
    "sin", "cos", "sqrt", "abs", "softplus", "log1p", "expm1", "square", "minimum", "where",
    "sum", "mean", "matmul", "elementwise", "Condition", "UFUNCS", "Unary",
    "CustomElementwise",
    "Op", "OpPartials", "Add", "Sub", "Mul", "Div", "Pow", "Exp", "Log", "Max", "Identity",
    "Scale", "Reciprocal", "LayerOp",
]
