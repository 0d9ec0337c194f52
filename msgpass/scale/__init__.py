"""Traces in the scientific Python stack: labelled arrays (xarray), chunked and compressed
storage (zarr), and a backend that runs the message pass as dask tasks. An optional extra:
``pip install "msgpass[scale]"``; without it these functions say what to install.

=========  ======================================================================
labels     ``to_xarray``: a trace as one Dataset; ``dense`` and ``ds.msgpass``
store      ``save_trace``, ``load_trace``, ``append_trace``, ``roll_back``: zarr stores
backend    ``dask_backward``: ``net.backward(backend="dask", ...)``
optional   ``require``: the extra's libraries, imported when first used
=========  ======================================================================

Importing this package imports none of xarray, zarr or dask; it plugs ``trace.to_xarray``,
``trace.save`` and the "dask" backend into msgpass (msgpass imports it).
"""

from __future__ import annotations

from .. import engine, trace
from .backend import dask_backward
from .labels import dense, register_accessor, to_xarray
from .optional import EXTRA, require
from .store import append_trace, load_trace, roll_back, save_trace

__all__ = ["to_xarray", "save_trace", "load_trace", "append_trace", "roll_back", "dense",
           "require", "dask_backward", "register_accessor", "EXTRA"]

trace.EXTENSIONS["to_xarray"] = to_xarray
trace.EXTENSIONS["save"] = save_trace
engine.BACKENDS["dask"] = dask_backward
