"""Spec lines for funcflux/ops/random.py: the Threefry-2x32 hash (integers: values and vmap).

Keys and counters are drawn as integers and cast to uint32 inside the line, so the sweep
also maps over keys with random batch axes (a batch of keys against shared counters, and
the other way round) and compares with a Python loop.
"""
from __future__ import annotations

import numpy as np

from funcflux.ops.random import threefry2x32_p
from tests.ops.specs import I, Spec

U32 = 2 ** 32 - 1


def _hash(k, c):
    return threefry2x32_p(k.astype(np.uint32), c.astype(np.uint32))


SPECS = [
    Spec("threefry2x32", _hash, [I("2", hi=U32), I("a b", hi=U32)], nondiff=True,
         id="threefry2x32-one-key"),
    Spec("threefry2x32", _hash, [I("a 2", hi=U32), I("b a", hi=U32)], nondiff=True,
         id="threefry2x32-keys-broadcast"),
    Spec("threefry2x32", _hash, [I("a b 2", hi=U32), I("", hi=U32)], nondiff=True,
         id="threefry2x32-one-counter"),
]
