"""What a witness says when the network's weights changed since its last forward pass.

A trace is the backward of the last forward pass, at the weights that pass saw: editing the
weights afterwards changes nothing in it, which is right (it is a record). The witnesses
(``mp.backprop``, ``mp.numeric_gradients``) and ``mp.verify`` run their own forward at today's
weights. When those differ (``Sequential.changed_since_forward``), they say which they used.
"""

from __future__ import annotations

__all__ = ["changed_weights_note"]


def changed_weights_note(net, who: str) -> str | None:
    """What ``who`` says when ``net``'s weights changed since its last forward pass: it
    computed at today's weights, and a trace of that pass reflects the old ones."""
    changed = net.changed_since_forward() if hasattr(net, "changed_since_forward") else []
    if not changed:
        return None
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6
                                      else "")
    return (f"{who} used the network's weights as they are now; {shown} changed since its "
            f"last forward pass, so a trace of that pass (net.backward()) reflects the old "
            f"values and differs from these results")
