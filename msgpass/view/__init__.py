"""Seeing a finished trace outside matplotlib figures: the interactive HTML explorer
(html.py), Graphviz DOT text (dot.py) and Jupyter's rich display (notebook.py). Like the
drawings, everything here reads a finished trace or report and changes nothing.

The traces and the report call these through ``msgpass.trace.EXTENSIONS`` (as they call
msgpass.scale), so that imports run one way: view sits above draw and verification. Each
module is imported on first use, so ``import msgpass`` imports neither matplotlib nor the
explorer's assets.
"""

import importlib

from .. import trace as _trace


def _on_first_use(module: str, function: str):
    def call(*args, **kwargs):
        return getattr(importlib.import_module(f".{module}", __name__), function)(*args,
                                                                                  **kwargs)
    call.__name__ = function
    call.__doc__ = f"msgpass.view.{module}.{function}, imported when first called."
    return call


_trace.EXTENSIONS.update({
    "to_html": _on_first_use("html", "write_html"),
    "to_dot": _on_first_use("dot", "to_dot"),
    "trace_html": _on_first_use("notebook", "trace_html"),
    "report_html": _on_first_use("notebook", "report_html"),
})
