"""Structured local partials (DESIGN.md §2): one class per kind, each owning its behaviour.

A layer's forward pass returns its local partial derivatives as data of one named kind:
input partials ``J^t[n, n'] = ∂_n g^t_{n'}`` (an ``InputPartials``) and, per parameter,
parameter partials ``K^t[i, n'] = ∂g^t_{n'}/∂θ^t_i`` (a ``ParamPartials``).

=========  ==========================  ======================  ===============================
kind       example layers              block stored as         dense view
=========  ==========================  ======================  ===============================
shared     Affine (J = W)              (B, N_{t-1}, N_t)       W broadcast over the batch
diagonal   ReLU, Sigmoid, Tanh,        (B, N): the edges n←n   zero off the diagonal
           Dropout, BatchNorm (eval)
dense      Softmax, LogSoftmax,        (B, N_{t-1}, N_t)       itself
           the losses, Function
coupled    BatchNorm (training)        (N, B, B): nodes are    itself; cut by features,
                                       (sample, feature)       never by samples
contracted the right factor of a plain   (M, K, B): node (l, j)  itself; cut by features
           matrix product a @ b        to (i, j), every i
window     Conv2d, AvgPool2d,          (B, C', H', W', C, kh,  J's taps placed at (c,i,j) ←
           GlobalAvgPool2d             kw): by sender and tap  (c',i',j'); no padding edges
route      MaxPool2d                   (B, C, H', W', kh, kw): one 1 per output unit, at
                                       the winning tap only    the winner
channel-   BatchNorm2d (training)      (C, B·H·W, B·H·W):      itself; cut by channels (and
coupled                                nodes (sample, position) bands of one channel)
blocks     a level of a graph's        each part as it         the parts' placed in one
           layered view                stores it, side by side (B, N_{t-1}, N_t)
=========  ==========================  ======================  ===============================

The kind interface
------------------
Everything that differs between kinds is a method of the kind, so the message pass
(msgpass.messages, msgpass.streaming), the dask backend, verify, statistics, labelled traces
and drawing never ask which kind they hold. A new kind is one class in one file here:

=================================  ===========================================================
``send(incoming, piece, out)``     δ for a piece: J's entries on its edges times S^{t+1}, the
                                   sums that arrived at the senders
``receive(messages, out)``         each receiver's Σ over the piece's edges (a plain sum, the
                                   diagonal's copy, the coupled sum over samples)
``dense()``                        J as a dense array (B, N_{t-1}, N_t), built by its own code
``dense_messages(block)``          a stored block in that dense layout
``dense_send``, ``dense_receive``  J·S and Σ_{n'} in the dense layout: verify's recursion check
``send_check(block, S)``           stored messages and J·S from the dense view's code, in a
                                   layout both share (a diagonal's own: never expanded)
``row(n)``, ``edge_counts(c)``     the edges from input node n with their partials, and
                                   path counts summed over edges (the path-sum witness)
``repeated(B)``                    partials of one sample repeated over a batch
``magnitude()``, ``magnitudes(M)`` |terms| of J, and Σ |J|·M: the scale of round-off
``edges()``, ``message_count(B)``  which (n, n') are edges; how many messages a block holds
``block_shape(B)``, ``block_dims``  the stored block's shape and axis names (labelled traces)
``edge_shape``                     the shape of per-edge statistics
``pieces(rows, bytes)``,           how a block is cut under a byte budget, where a piece sits
``piece_index``, ``piece_shape``,  in the block, and the bytes of the smallest piece
``smallest_piece_bytes(B)``
``samples_independent``            whether the block has a sample axis that can be cut, kept
                                   and summarised sample by sample
``storage``, ``expand_stored``     how a block is laid out in a trace store, and expanded
=================================  ===========================================================

The base class gives the defaults of a block ``(B, N_{t-1}, ...)``: sample axis first,
receivers second, summed over its last axis. A kind implements ``n_in``, ``n_out``,
``dtype``, ``send``, ``dense`` and ``edges``, and overrides what its layout changes
(``tests/test_partials.py`` defines a toy kind in the test file and runs it through the message
pass, verify and statistics).

Where DESIGN.md §5 names the dense view ``dense(messages)``, the code keeps two names:
``dense()`` is J's dense view and ``dense_messages(block)`` the messages', since both are used
and they are different quantities.
"""

from .base import STORAGES, InputPartials, LocalPartials, ParamPartials, Piece
from .blocks import Blocks, Part
from .channels import ChannelCoupled
from .contracted import Contracted
from .coupled import Coupled
from .dense import Dense
from .diagonal import Diagonal
from .params import Elementwise, Full, Kernel, Outer, PerChannel
from .route import Route
from .selection import Selection
from .shared import Shared
from .window import Window

__all__ = [
    "InputPartials", "Shared", "Diagonal", "Dense", "Coupled", "ParamPartials", "Outer",
    "Elementwise", "Full", "LocalPartials", "Piece", "STORAGES", "Blocks", "Part", "Window",
    "Route", "ChannelCoupled", "Kernel", "PerChannel", "Selection", "Contracted",
]
