"""Graphs beyond chains: multi-input nodes, fan-out, expression graphs (issue 4).

graph.py builds and evaluates a Graph; node.py has its nodes and the expressions written with
them; ops.py the operations; backward.py the message pass (DAG view) and its GraphTrace;
layered.py the same pass as a chain of levels.
"""

from .backward import GraphEdge, GraphTrace, graph_backward
from .graph import Graph, GraphForward
from .layered import LayeredView, layered_view, levels_of
from .node import Node, concat, copy, exp, log, maximum, relu, sigmoid, take, tanh
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
    "Graph", "GraphForward", "Node", "GraphTrace", "GraphEdge", "LayeredView", "graph_backward",
    "layered_view", "levels_of",
    "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy", "concat", "take",
    "Op", "OpPartials", "Add", "Sub", "Mul", "Div", "Pow", "Exp", "Log", "Max", "Identity",
    "Scale", "Reciprocal", "LayerOp",
]
