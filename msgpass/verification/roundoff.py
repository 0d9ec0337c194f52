"""Round-off scales: path magnitudes, the sums and gradients recomputed with every local partial
replaced by the size of the terms it is formed from (msgpass.verification.compare says how they are
used). Built from each kind's dense view with plain numpy, not from the message code."""

from __future__ import annotations

import numpy as np

from ..naming import internal_keys, shown

__all__ = ["path_magnitudes", "graph_path_magnitudes"]


def path_magnitudes(trace) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """Round-off scales of a chain's sums (by t) and gradients (by key).

    ``M^t_n = Σ_{n'} |J^t[n, n']| · M^{t+1}_{n'}``, ``M^{T+1} = 1/B``: the sum over all paths
    from node n to the loss of |product of local partials|, i.e. what |S^t_n| would be if
    nothing cancelled. Both summation orders err by a few u·M, so M, not |S|, says whether an
    entry is "near zero". A partial that is a difference of larger terms counts those terms
    (``InputPartials.magnitude``).
    """
    T, batch = trace.T, trace.batch
    dtype = np.float64
    M = {T + 1: np.full((batch, 1), 1.0 / batch, dtype=dtype)}
    for t in range(T, 0, -1):
        J = trace.partials[t - 1].inputs
        M[t] = np.asarray(J.magnitudes(M[t + 1]), dtype=dtype)
    grads = {}
    names = getattr(trace, "param_names", None)
    inside = internal_keys(names)
    for key in trace.grads:
        t, name = inside.get(key, key).split(".", 1)
        K = trace.partials[int(t) - 1].params[name].absolute()
        # in the shape the gradient is shown in (an imported model's transposed weight)
        grads[key] = shown(names, inside.get(key, key),
                           K.gradient(M[int(t) + 1].astype(dtype)))[1]
    return M, grads


def graph_path_magnitudes(trace) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``path_magnitudes`` for a graph: M_v = Σ over consumers w of |J_{w,v}| · M_w, M at the
    output = |seed|."""
    graph = trace.graph
    M = {name: np.zeros_like(trace.values[name]) for name in trace.order}
    M[trace.output] = np.abs(trace.seed)
    for name in reversed(trace.order):
        node = graph.nodes[name]
        for slot, source in enumerate(node.inputs):
            received = trace.partials[name].inputs[slot].magnitudes(M[name])
            if M[source].shape[0] == 1 < received.shape[0]:  # shared by every sample
                received = received.sum(axis=0, keepdims=True)
            M[source] = M[source] + received
    grads = {}
    names = getattr(graph, "param_names", None)
    inside = internal_keys(names)
    for key in trace.grads:
        holder, pname = inside.get(key, key).rsplit(".", 1)
        grads[key] = shown(names, inside.get(key, key), trace.partials[holder].params[
            pname].absolute().gradient(M[holder]))[1]
    return M, grads
