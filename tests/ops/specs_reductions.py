"""Spec lines for the reductions family (funcflux/ops/reductions.py)."""
from __future__ import annotations

import numpy as np

from tests.ops.specs import B, F, Spec

SPECS = [
    # sum (linear primitive): every axis form
    Spec("sum", lambda x: np.sum(x), [F("a b c")], id="sum-all"),
    Spec("sum", lambda x: np.sum(x, axis=1), [F("a b c")], id="sum-axis1"),
    Spec("sum", lambda x: np.sum(x, axis=-1, keepdims=True), [F("a b c")], id="sum-neg-keepdims"),
    Spec("sum", lambda x: np.sum(x, axis=(0, -1)), [F("a b c")], id="sum-tuple"),
    Spec("sum", lambda x: x.sum(axis=(2, 0), keepdims=True), [F("a b c")], id="sum-method-tuple-keepdims"),
    Spec("sum", lambda x: np.sum(x, axis=None, keepdims=True), [F("a b")], id="sum-none-keepdims"),
    Spec("sum", lambda x: np.sum(x, axis=0, initial=1.5), [F("a b")], id="sum-initial"),
    Spec("sum", lambda x: np.sum(x), [F("")], id="sum-0d"),
    # max / min (ties share the gradient; distinct draws keep finite differences valid)
    Spec("max", lambda x: np.max(x), [F("a b", distinct=True)], id="max-all"),
    Spec("max", lambda x: np.max(x, axis=-1), [F("a b c", distinct=True)], id="max-neg"),
    Spec("max", lambda x: np.amax(x, axis=(0, 2), keepdims=True), [F("a b c", distinct=True)],
         id="amax-tuple-keepdims"),
    Spec("max", lambda x: x.max(axis=0), [F("a b", distinct=True)], id="max-method"),
    Spec("min", lambda x: np.min(x, axis=1), [F("a b c", distinct=True)], id="min-axis1"),
    Spec("min", lambda x: np.amin(x, axis=(-1, 0), keepdims=True), [F("a b c", distinct=True)],
         id="amin-tuple-keepdims"),
    Spec("min", lambda x: np.min(x), [F("a", distinct=True)], id="min-all"),
    Spec(("max", "min"), lambda x: np.ptp(x, axis=0), [F("a b", distinct=True)], id="ptp"),
    # prod
    Spec("prod", lambda x: np.prod(x), [F("a b")], id="prod-all"),
    Spec("prod", lambda x: np.prod(x, axis=-1), [F("a b c")], id="prod-neg"),
    Spec("prod", lambda x: np.prod(x, axis=(0, 2), keepdims=True), [F("a b c")], id="prod-tuple-keepdims"),
    Spec("prod", lambda x: x.prod(axis=1, keepdims=True), [F("a b")], id="prod-method"),
    # mean, var, std, average (compositions)
    Spec("mean", lambda x: np.mean(x, axis=1), [F("a b c")], id="mean-axis1"),
    Spec("mean", lambda x: np.mean(x, axis=(-1, 0), keepdims=True), [F("a b c")], id="mean-tuple"),
    Spec("mean", lambda x: x.mean(), [F("a b")], id="mean-method"),
    Spec("mean", lambda x: np.mean(x), [F("")], id="mean-0d"),
    Spec("sum", lambda x: np.mean(x, axis=0, dtype=np.float64), [F("a b")], id="mean-dtype"),
    Spec("sum", lambda x: np.var(x, axis=0), [F("a b")], id="var-axis0"),
    Spec("sum", lambda x: np.var(x, axis=(0, -1), ddof=1, keepdims=True), [F("a b c")],
         sizes=(2, 4), id="var-ddof-tuple"),
    Spec("sum", lambda x: np.std(x), [F("a b")], sizes=(2, 4), id="std-all"),
    Spec("sum", lambda x: x.std(axis=-1, ddof=1), [F("a b")], sizes=(2, 4), id="std-ddof"),
    Spec("sum", lambda x, w: np.average(x, axis=1, weights=w), [F("a b"), F("b", lo=0.5, hi=2.0)],
         id="average-weights"),
    Spec("sum", lambda x: np.average(x, axis=(0, 1)), [F("a b c")], id="average"),
    # scans
    Spec("cumsum", lambda x: np.cumsum(x), [F("a b")], id="cumsum-none"),
    Spec("cumsum", lambda x: np.cumsum(x, axis=0), [F("a b c")], id="cumsum-axis0"),
    Spec("cumsum", lambda x: x.cumsum(axis=-1), [F("a b")], id="cumsum-neg"),
    Spec(("getitem", "concatenate", "multiply"), lambda x: np.cumprod(x, axis=1), [F("a b c")],
         sizes=(1, 6), id="cumprod-axis1"),
    Spec(("getitem", "concatenate", "multiply"), lambda x: np.cumprod(x), [F("a b")], id="cumprod-none"),
    Spec(("getitem", "concatenate", "multiply"), lambda x: x.cumprod(axis=-1), [F("a 5")],
         id="cumprod-neg"),
    # index-valued and boolean reductions (no derivative)
    Spec("argmax", lambda x: np.argmax(x), [F("a b", distinct=True)], nondiff=True, id="argmax-all"),
    Spec("argmax", lambda x: np.argmax(x, axis=-1, keepdims=True), [F("a b c", distinct=True)],
         nondiff=True, id="argmax-neg-keepdims"),
    Spec("argmax", lambda x: np.argmax(x, keepdims=True), [F("a b", distinct=True)],
         nondiff=True, id="argmax-none-keepdims"),
    Spec("argmin", lambda x: np.argmin(x, axis=0), [F("a b", distinct=True)], nondiff=True,
         id="argmin-axis0"),
    Spec("argmin", lambda x: x.argmin(), [F("a b", distinct=True)], nondiff=True, id="argmin-all"),
    Spec("all", lambda m: np.all(m, axis=1), [B("a b")], nondiff=True, id="all-axis1"),
    Spec("all", lambda x: np.all(x > 0, axis=(0, -1), keepdims=True), [F("a b c")], nondiff=True,
         id="all-tuple"),
    Spec("any", lambda m: np.any(m), [B("a b")], nondiff=True, id="any-all"),
    Spec("any", lambda x: np.any(x > 0, axis=-1), [F("a b")], nondiff=True, id="any-neg"),
    # sorting
    Spec("argsort", lambda x: np.argsort(x), [F("a b", distinct=True)], nondiff=True, id="argsort"),
    Spec("argsort", lambda x: np.argsort(x, axis=0), [F("a b", distinct=True)], nondiff=True,
         id="argsort-axis0"),
    Spec("argsort", lambda x: np.argsort(x, axis=None), [F("a b", distinct=True)], nondiff=True,
         id="argsort-none"),
    Spec(("argsort", "getitem"), lambda x: np.sort(x), [F("a b", distinct=True)], id="sort"),
    Spec(("argsort", "getitem"), lambda x: np.sort(x, axis=0), [F("a b c", distinct=True)],
         id="sort-axis0"),
    Spec(("argsort", "getitem"), lambda x: np.sort(x, axis=None), [F("a b", distinct=True)],
         id="sort-none"),
]
