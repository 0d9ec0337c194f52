"""Independent witnesses (DESIGN.md §3). None of them imports the message code they check:
they use only the layers' ``forward`` and classic ``backward``."""

from .backprop import BackpropResult, backprop
from .numeric import NumericResult, numeric_gradients, numeric_witness

__all__ = ["backprop", "BackpropResult", "numeric_gradients", "numeric_witness", "NumericResult"]
