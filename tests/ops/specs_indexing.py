"""Spec lines for indexing: every index kind, the scatters, take/diagonal and kin.

Indexed axes have literal sizes so that drawn index values stay in range.
Boolean masks make the output shape depend on the mask's values: a batched
mask has no fixed shape under vmap, so those lines set ``vmap=False`` (vmap
with a closed-over mask is in test_indexing.py).
"""
from __future__ import annotations

import numpy as np

import funcflux.numpy as fnp
from tests.ops.specs import B, C, F, I, Spec

G = "getitem"
# x[i] with x a plain ndarray and i traced never reaches funcflux (ndarray.__getitem__
# has no dispatch protocol, and np.take dispatches on x only), and the sweep leaves x
# unbatched at times: spell those fnp.getitem and fnp.take (test_indexing.py checks the
# NumPy spellings route here).
ix = fnp.getitem

SPECS = [
    # basic indices
    Spec(G, lambda x: x[1], [F("3 b")], id="getitem_int"),
    Spec(G, lambda x: x[-1, ::-2], [F("2 5")], id="getitem_neg_int_neg_step"),
    Spec(G, lambda x: x[1:, ::2, :-1], [F("a b c")], id="getitem_slices"),
    Spec(G, lambda x: x[None, ..., 1, None], [F("a b 3")], id="getitem_none_ellipsis"),
    Spec(G, lambda x: x[..., 2:0:-1], [F("a 3")], id="getitem_ellipsis_slice"),
    # integer arrays (batched under vmap by the sweep)
    Spec(G, lambda x, i: ix(x, i), [F("4 b"), I("c d", hi=3)], id="getitem_array"),
    Spec(G, lambda x, i: ix(x, i), [F("3 b"), I("6", hi=2)], id="getitem_repeated"),
    Spec(G, lambda x, i: ix(x, (slice(None), i)), [F("a 4"), I("c", lo=-4, hi=3)],
         id="getitem_negative_array"),
    Spec(G, lambda x, i, j: ix(x, (i, slice(None), j)), [F("3 b 4"), I("c 1", hi=2), I("d", hi=3)],
         id="getitem_arrays_split_by_slice"),
    Spec(G, lambda x, i, j: ix(x, (slice(None), i, j)), [F("a 3 4"), I("c d", hi=2), I("d", hi=3)],
         id="getitem_arrays_adjacent"),
    Spec(G, lambda x, i: ix(x, (1, slice(None), i)), [F("2 b 4"), I("c", hi=3)],
         id="getitem_int_slice_array"),
    Spec(G, lambda x, i: ix(x, (slice(None), 1, i)), [F("a 2 4"), I("c", hi=3)],
         id="getitem_int_array_adjacent"),
    Spec(G, lambda x, i: ix(x, (i, None, i)), [F("3 3"), I("c", hi=2)], id="getitem_array_none_array"),
    Spec(G, lambda x: x[[0, 2, 2], 1:], [F("3 b")], id="getitem_list"),
    # boolean masks: the output shape depends on the mask
    Spec(G, lambda x, m: x[m], [F("a b"), B("a b")], vmap=False, id="getitem_mask"),
    Spec(G, lambda x, m: x[:, m], [F("a b c"), B("b")], vmap=False, id="getitem_mask_rows"),
    # the scatters, through the functional updates
    Spec("scatter_add", lambda x, i, v: fnp.index_add(x, i, v),
         [F("4 b"), I("c", hi=3), F("c b")], id="index_add"),
    Spec("scatter_add", lambda x, i, v: fnp.index_add(x, (i, slice(None), i), v),
         [F("3 b 3"), I("c", hi=2), F("b")], id="index_add_split"),
    Spec("scatter_set", lambda x, i, v: fnp.index_update(x, i, v),
         [F("4 b"), I("c", hi=3), F("c b")], id="index_update"),
    Spec("scatter_set", lambda x, v: fnp.index_update(x, (slice(None), 1), v),
         [F("a 3"), F("a")], id="index_update_basic"),
    # take and kin
    Spec(G, lambda x, i: fnp.take(x, i, axis=1), [F("a 4"), I("c d", hi=3)], id="take"),
    Spec(G, lambda x, i: fnp.take(x, i), [F("2 3"), I("c", hi=5)], id="take_flat"),
    Spec(G, lambda x, i: fnp.take(x, i, axis=0, mode="wrap"), [F("3"), I("c", lo=-5, hi=5)],
         id="take_wrap"),
    Spec(G, lambda x, i: np.take_along_axis(x, i, axis=1), [F("a 4"), I("a c", hi=3)],
         id="take_along_axis"),
    Spec(G, lambda x, i: np.take_along_axis(x, i, axis=0), [F("4 b"), I("c 1", hi=3)],
         id="take_along_axis_broadcast"),
    Spec(G, lambda x: np.diagonal(x, 1, 0, 2), [F("a b c")], id="diagonal"),
    Spec(G, lambda x: x.diagonal(-1, 2, 1), [F("a b c")], id="diagonal_method"),
    Spec("scatter_add", lambda v: np.diag(v, k=-1), [F("a")], id="diag_1d"),
    Spec(G, lambda x: np.diag(x, 1), [F("a b")], id="diag_2d"),
    Spec(G, lambda x: np.trace(x, offset=-1), [F("a b c")], id="trace"),
    Spec("where", lambda x: np.triu(x, 1), [F("a b c")], id="triu"),
    Spec("where", lambda x: np.tril(x, -1), [F("a b")], id="tril"),
    Spec("where", lambda x, y: np.select([x < -0.5, y > 0.5], [x * y, y ** 2], default=x),
         [F("a b"), F("b")], id="select"),
    Spec("where", lambda x: np.select([x > 0], [np.sin(x)]), [F("a")], id="select-default"),
    Spec("where", lambda x, z: np.select([x > 0], [z * x], default=z), [F("a"), C("a")],
         id="select-complex"),
    Spec((), lambda x: np.nonzero(x > 0), [F("a b")], nondiff=True, vmap=False, id="nonzero"),
    Spec((), lambda x: np.argwhere(x > 0), [F("a b")], nondiff=True, vmap=False, id="argwhere"),
    Spec((), lambda x: np.flatnonzero(x > 0), [F("a b")], nondiff=True, vmap=False,
         id="flatnonzero"),
]
