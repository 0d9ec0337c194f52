"""Independent witnesses (DESIGN.md §3). None of them imports the message code they check:
they use only the layers' ``forward`` and classic ``backward``."""

from .numeric import NumericResult, numeric_gradients, numeric_witness
from .standard import BackpropResult, backprop

__all__ = ["backprop", "BackpropResult", "numeric_gradients", "numeric_witness", "NumericResult"]
