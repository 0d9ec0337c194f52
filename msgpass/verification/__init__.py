"""Verification: the induction proof walked step by step and measured (DESIGN.md §4).

(The package is ``verification``, not ``verify``: ``msgpass.verify`` is the function, and a
package of that name would hide behind it. ``msgpass.verify.*`` module paths still import.
The comparison function is ``msgpass.compare`` or ``msgpass.verification.compare.compare``;
``msgpass.verification.compare`` is its module.)

=============  =================================================================================
module         what it holds
=============  =================================================================================
compare        the comparison rule, the tolerances with their reasons, and the arithmetic
               strategies (float, exact, mp) that let one walk serve every kind of numbers
report         Check (one measured claim; holds / fails / inconclusive), Report and its verdict
witness        the witness interface and the witnesses shipped: backprop, numeric, layered,
               pathsum
roundoff       path magnitudes, the scale of round-off that comparisons are judged against
chain          the walk on a chain (Sequential)
graph          the walk on a graph
=============  =================================================================================
"""

from __future__ import annotations

from ..graph import Graph, Node
from ..validate import positive_int
from .chain import walk_chain
from .compare import (
    TOL_EXACT,
    TOL_F32_BACKPROP,
    TOL_F32_NUMERIC,
    TOL_F32_RECURSION,
    TOL_F64_BACKPROP,
    TOL_F64_NUMERIC,
    TOL_F64_RECURSION,
    Arithmetic,
    Comparison,
    Tolerance,
    compare_numbers,
    tolerances_for,
)
from .graph import walk_graph
from .report import Check, KinkReport, Report, WitnessInfo
from .roundoff import graph_path_magnitudes, path_magnitudes
from .witness import (
    CHAIN_WITNESSES,
    GRAPH_WITNESSES,
    WITNESSES,
    Evidence,
    Expected,
    Witness,
    chosen,
)

__all__ = ["verify", "verify_graph", "Report", "Check", "KinkReport", "Witness", "Evidence",
           "Expected", "WitnessInfo", "WITNESSES", "CHAIN_WITNESSES", "GRAPH_WITNESSES",
           "DEFAULT_NUMERIC_ENTRIES", "path_magnitudes", "graph_path_magnitudes", "Tolerance",
           "Comparison", "compare_numbers", "tolerances_for", "Arithmetic",
           "TOL_F64_BACKPROP", "TOL_F64_NUMERIC", "TOL_F64_RECURSION", "TOL_F32_BACKPROP",
           "TOL_F32_NUMERIC", "TOL_F32_RECURSION", "TOL_EXACT"]

# per parameter array, per layer's tail and per graph node; larger ones get a seeded sample
DEFAULT_NUMERIC_ENTRIES = 1000


def verify(net, x=None, target=None, *, numeric: bool = True,
           numeric_entries: int | None = DEFAULT_NUMERIC_ENTRIES, numeric_seed: int = 0,
           seed=None, path_limit: int | None = None, witnesses=None, progress=None) -> Report:
    """Walk the induction on one batch and measure every step.

    ``verify(graph, output)``, ``verify(graph, output, seed)`` or ``verify(graph, output,
    seed=...)`` verifies a Graph instead, ``seed`` being the upstream gradient of the output:
    see ``verify_graph``.

    Parameters
    ----------
    net : Sequential (or Graph)
    x, target : as for ``net.forward``
    numeric : bool
        Include the numerical witness (the slowest part; off leaves the others).
    numeric_entries : int or None
        At most this many entries of each parameter array are estimated numerically (a
        sample drawn with ``numeric_seed``), and of each layer's tail (a chain) or each graph
        node at most this many; None estimates all. The report's notes say what was sampled.
    witnesses : list of str or Witness, optional
        Which witnesses to compare with, by name ("backprop", "numeric", and for graphs
        "layered", "pathsum", "forward") or as Witness objects (msgpass.verification.witness).
        Default: all of those; ``numeric=False`` leaves out the numerical one.
    progress : None, bool or callable(done, total), graphs only
        How a long numerical witness reports (msgpass.witnesses.progress): None (default)
        prints a line to stderr every few seconds once the run is projected to be long, and
        nothing for a short one; True always, False never; a callable is given the forward
        evaluations done and planned instead.

    Returns
    -------
    Report
    """
    if numeric_entries is not None:
        positive_int(numeric_entries, "numeric_entries", noun="integer or None")
    if isinstance(net, Graph) and getattr(net, "torch_output", None) is not None and \
            x is not None and not isinstance(x, (str, Node)):
        # an imported model, verified as a network is: verify(model, x, target)
        net.forward(x, target=target)
        return verify_graph(net, net.torch_output, seed, numeric=numeric,
                            path_limit=path_limit, witnesses=witnesses,
                            numeric_entries=numeric_entries, numeric_seed=numeric_seed,
                            progress=progress)
    if isinstance(net, Graph):
        if seed is not None and target is not None:
            raise ValueError("give the graph's seed once: verify(g, f, seed) or seed=...")
        return verify_graph(net, x, target if seed is None else seed, numeric=numeric,
                            path_limit=path_limit, witnesses=witnesses,
                            numeric_entries=numeric_entries, numeric_seed=numeric_seed,
                            progress=progress)
    if seed is not None:
        raise ValueError("seed= is the upstream gradient of a graph's output; a network's loss "
                         "is a batch mean (numeric_seed= chooses the numerical sample)")
    return walk_chain(net, x, target, chosen(witnesses, CHAIN_WITNESSES, numeric, "chain"),
                        numeric_entries, numeric_seed)


def verify_graph(graph, output, seed=None, *, numeric: bool = True,
                 path_limit: int | None = None, witnesses=None,
                 numeric_entries: int | None = DEFAULT_NUMERIC_ENTRIES, numeric_seed: int = 0,
                 progress=None) -> Report:
    """The induction on a graph, node by node in reverse topological order (see
    msgpass.verification.graph); the options as for ``verify``."""
    if numeric_entries is not None:
        positive_int(numeric_entries, "numeric_entries", noun="integer or None")
    return walk_graph(graph, output, seed,
                         witnesses=chosen(witnesses, GRAPH_WITNESSES, numeric, "graph"),
                         path_limit=path_limit, numeric_entries=numeric_entries,
                         numeric_seed=numeric_seed, progress=progress)
