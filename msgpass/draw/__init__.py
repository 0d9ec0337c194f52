"""Drawings of finished traces (issue 6). Every function returns a matplotlib Figure (or writes
a file) and reads only the trace; nothing here uses pyplot or needs a display."""

from .animation import animate_backward
from .graph import draw_graph
from .network import MAX_EDGES, draw_network
from .panels import draw_message_panels
from .style import save
from .verification import draw_verification

__all__ = ["draw_network", "draw_message_panels", "draw_graph", "draw_verification",
           "animate_backward", "save", "MAX_EDGES"]
