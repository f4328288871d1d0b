"""Spec lines for the reductions family (funcflux/ops/reductions.py)."""
from __future__ import annotations

import numpy as np

from tests.ops.specs import B, C, F, Spec


def _with_nans(x):
    """``x`` with a row of NaNs appended (every column keeps a real entry), on x's device."""
    return np.concatenate([x, np.where(x[:1] == x[:1], np.nan, x[:1])])


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
    # order statistics: partition, median, quantile, percentile (distinct: no ties)
    Spec(("argpartition", "getitem"), lambda x: np.partition(x, 1, axis=0), [F("a b", distinct=True)],
         sizes=(2, 4), id="partition"),
    Spec(("argpartition", "getitem"), lambda x: np.partition(x, (0, -1), axis=None),
         [F("a b", distinct=True)], id="partition-none"),
    Spec("argpartition", lambda x: np.argpartition(x, -1), [F("a b", distinct=True)],
         nondiff=True, id="argpartition"),
    Spec(("argsort", "getitem"), lambda x: np.median(x), [F("a b", distinct=True)], id="median"),
    Spec(("argsort", "getitem"), lambda x: np.median(x, axis=(0, 2), keepdims=True),
         [F("a b c", distinct=True)], id="median-tuple-keepdims"),
    Spec(("argsort", "getitem"), lambda x: np.quantile(x, [0.1, 0.65], axis=-1),
         [F("a b", distinct=True)], id="quantile"),
    Spec(("argsort", "getitem"), lambda x, q: np.quantile(x, q, axis=0),
         [F("a b", distinct=True), F("c", 0.05, 0.95)], id="quantile-traced-q"),
    Spec(("argsort", "getitem"), lambda x: np.percentile(x, 30.0, axis=1, keepdims=True),
         [F("a b", distinct=True)], id="percentile"),
    # NaN-ignoring reductions: a row of NaNs is appended (its entries get derivative 0)
    Spec("sum", lambda x: np.nansum(_with_nans(x), axis=0), [F("a b")], id="nansum"),
    Spec("sum", lambda x: np.nanmean(_with_nans(x), axis=0), [F("a b")], id="nanmean"),
    Spec("sum", lambda x: np.nanmean(_with_nans(x)), [F("a b")], id="nanmean-all"),
    Spec("sum", lambda x: np.nanvar(_with_nans(x), axis=0), [F("a b")], id="nanvar"),
    Spec("sum", lambda x: np.nanstd(_with_nans(x), axis=0, ddof=1), [F("a b")], sizes=(2, 4),
         id="nanstd-ddof"),
    Spec("max", lambda x: np.nanmax(_with_nans(x), axis=0), [F("a b", distinct=True)],
         id="nanmax"),
    Spec("min", lambda x: np.nanmin(_with_nans(x), axis=0, keepdims=True),
         [F("a b", distinct=True)], id="nanmin"),
    # complex inputs (sum, mean, prod, cumsum, cumprod are holomorphic; var/std are real)
    Spec("sum", lambda z: np.sum(z, axis=0), [C("a b")], id="sum-complex"),
    Spec("mean", lambda z: np.mean(z, axis=-1, keepdims=True), [C("a b")], id="mean-complex"),
    Spec("prod", lambda z: np.prod(z, axis=1), [C("a b")], id="prod-complex"),
    Spec("cumsum", lambda z: np.cumsum(z, axis=0), [C("a b")], id="cumsum-complex"),
    Spec(("getitem", "concatenate", "multiply"), lambda z: np.cumprod(z, axis=-1), [C("a b")],
         id="cumprod-complex"),
    Spec("sum", lambda z: np.var(z, axis=0), [C("a b")], id="var-complex"),
    Spec("sum", lambda z: np.std(z, axis=1, ddof=1), [C("a b")], sizes=(2, 4), id="std-complex"),
    Spec("sum", lambda z: np.nanmean(_with_nans(z), axis=0), [C("a b")], id="nanmean-complex"),
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
