"""Graphs beyond chains: multi-input nodes, fan-out, expression graphs (issue 4)."""

from .backward import GraphEdge, GraphTrace, LayeredView, graph_backward, layered_view
from .graph import Graph, Node, copy, exp, log, maximum, relu, sigmoid, tanh
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

__all__ = [
    "Graph", "Node", "GraphTrace", "GraphEdge", "LayeredView", "graph_backward", "layered_view",
    "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy",
    "Op", "OpPartials", "Add", "Sub", "Mul", "Div", "Pow", "Exp", "Log", "Max", "Identity",
    "Scale", "Reciprocal", "LayerOp",
]
