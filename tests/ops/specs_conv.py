"""Spec lines for the sliding-window primitives (``patches``, ``col2im`` in funcflux/ops/patches.py).

Spatial sizes are fixed digits so every window fits; leading axes vary.
"""
from __future__ import annotations

import numpy as np

import funcflux.numpy as fnp
from tests.ops.specs import F, Spec

SPECS = [
    Spec("patches", lambda x: fnp.patches(x, (2, 3)), [F("a b 4 5")], id="patches-2d"),
    Spec("patches", lambda x: fnp.patches(x, (2, 2), stride=(2, 1), dilation=(1, 2)),
         [F("a 5 6")], id="patches-stride-dilation"),
    Spec("patches", lambda x: fnp.patches(x, 3, stride=2), [F("a 7")], id="patches-1d"),
    Spec("patches", lambda x: fnp.patches(x, (2, 1, 2), stride=(1, 2, 2)), [F("a 3 3 4")],
         id="patches-3d"),
    Spec("col2im", lambda c: fnp.col2im(c, (4, 5)), [F("a b 2 3 3 3")], id="col2im-overlap"),
    Spec("col2im", lambda c: fnp.col2im(c, (5, 5), stride=2), [F("a 2 2 2 2")],
         id="col2im-disjoint-gaps"),
    Spec("col2im", lambda c: fnp.col2im(c, (4, 6), stride=2), [F("a 2 2 2 3")],
         id="col2im-tiles"),
    Spec("col2im", lambda c: fnp.col2im(c, (6,), stride=2, dilation=2), [F("a b 2 2")],
         id="col2im-1d-dilated"),
    Spec("patches", lambda x: fnp.patches(x, (2, 3), stride=(2, 1), kernel_first=True),
         [F("a b 5 4")], id="patches-kernel-first"),
    Spec("col2im", lambda c: fnp.col2im(c, (5, 4), stride=(1, 2), dilation=(2, 1),
                                        kernel_first=True), [F("2 2 a 3 2")],
         id="col2im-kernel-first"),
    Spec("col2im", lambda c: fnp.col2im(c, (4, 4), stride=2, kernel_first=True), [F("2 2 a b 2 2")],
         id="col2im-kernel-first-tiles"),
    # The two compose into pooling: patches then a reduction over the kernel axes.
    Spec(("patches", "max"), lambda x: np.max(fnp.patches(x, (2, 2), stride=2), axis=(-4, -3)),
         [F("a 4 5", distinct=True)], id="patches-maxpool"),
    Spec(("patches", "max"), lambda x: np.max(fnp.patches(x, (2, 2), stride=1, kernel_first=True),
                                              axis=(0, 1)),
         [F("a 3 4", distinct=True)], id="patches-maxpool-kernel-first"),
    Spec(("patches", "matmul"), lambda x, w: w @ np.reshape(fnp.patches(x, (2, 2)), (-1, 8, 9)),
         [F("a 2 4 4"), F("3 8")], id="patches-conv"),
    # 1-D and 3-D layers pool with the kernel axes first as 2-D does.
    Spec("patches", lambda x: fnp.patches(x, (2, 1, 2), stride=(1, 2, 1), kernel_first=True),
         [F("a 3 3 4")], id="patches-3d-kernel-first"),
    Spec("col2im", lambda c: fnp.col2im(c, (5,), stride=2, kernel_first=True), [F("2 a b 2")],
         id="col2im-1d-kernel-first"),
]
