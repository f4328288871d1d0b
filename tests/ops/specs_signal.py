"""Spec lines for sampled signals: the compositions of funcflux/numpy/_signal.py, and searchsorted."""
from __future__ import annotations

import numpy as np

import funcflux as ff
from tests.ops.specs import C, F, Spec

XP = np.array([-1.5, -0.2, 0.4, 1.7])  # interp's sample points (a constant)


def _xp(like):
    """``XP`` on the device of ``like`` (interp's xp is a constant, made beside the data)."""
    return ff.device.array_module(like).asarray(XP)

LIN = ("getitem", "concatenate", "multiply")

SPECS = [
    # linspace: traced endpoints, scalars and arrays
    Spec(LIN, lambda a, b: np.linspace(a, b, 5), [F(""), F("")], id="linspace"),
    Spec(LIN, lambda a, b: np.linspace(a, b, 4, endpoint=False, axis=-1), [F("b"), F("a b")],
         id="linspace-axis-noendpoint"),
    Spec(LIN, lambda a, b: np.linspace(a, b, 3, retstep=True), [F("a"), F("a")],
         id="linspace-retstep"),
    # differences
    Spec("getitem", lambda x: np.diff(x), [F("a b")], id="diff"),
    Spec("getitem", lambda x: np.diff(x, n=2, axis=0), [F("a b")], id="diff-n2-axis0"),
    Spec(("getitem", "concatenate"), lambda x, p: np.diff(x, prepend=p, append=0.5),
         [F("a b"), F("a 1")], id="diff-prepend-append"),
    Spec(("getitem", "concatenate"), lambda x, e: np.ediff1d(x, to_begin=e, to_end=[1.0, 2.0]),
         [F("a b"), F("c")], id="ediff1d"),
    Spec("getitem", lambda f: np.gradient(f), [F("a")], sizes=(2, 5), id="gradient"),
    Spec("getitem", lambda f: np.gradient(f, 0.5, 2.0), [F("a b")], sizes=(2, 4),
         id="gradient-spacings"),
    Spec("getitem", lambda f, h: np.gradient(f, h, axis=-1, edge_order=2), [F("a b"), F("", 0.5, 2.0)],
         sizes=(3, 5), id="gradient-edge2-traced-h"),
    Spec("getitem", lambda f, dx: np.gradient(f, np.cumsum(dx), axis=0),
         [F("a b"), F("a", 0.5, 1.5)], sizes=(2, 5), id="gradient-coords"),
    Spec("getitem", lambda f, dx: np.gradient(f, np.cumsum(dx), axis=0, edge_order=2),
         [F("a b"), F("a", 0.5, 1.5)], sizes=(3, 5), id="gradient-coords-edge2"),
    # convolution: both arguments, every mode
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.convolve(a, v), [F("a"), F("b")],
         id="convolve"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.convolve(a, v, "same"), [F("a"), F("b")],
         id="convolve-same"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.convolve(a, v, mode="valid"),
         [F("a"), F("b")], id="convolve-valid"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.correlate(a, v), [F("a"), F("b")],
         id="correlate"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.correlate(a, v, "same"), [F("a"), F("b")],
         id="correlate-same"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.correlate(a, v, "full"), [F("a"), F("b")],
         id="correlate-full"),
    # interpolation: in x and fp (xp constant)
    Spec(("searchsorted", "getitem"), lambda x, fp: np.interp(x, _xp(fp), fp), [F("a b"), F("4")],
         id="interp"),
    Spec(("searchsorted", "getitem"), lambda x, fp: np.interp(x, _xp(fp), fp, left=-3.0, right=fp[1]),
         [F("a"), F("4")], id="interp-left-right"),
    Spec(("searchsorted", "getitem"), lambda x, fp: np.interp(x, _xp(fp), fp, period=3.5),
         [F("a", -5.0, 5.0), F("4")], id="interp-period"),
    # complex values
    Spec(LIN, lambda a, b: np.linspace(a, b, 4), [C(""), C("a")], id="linspace-complex"),
    Spec("getitem", lambda z: np.diff(z, axis=0), [C("a b")], id="diff-complex"),
    Spec("getitem", lambda z: np.gradient(z, axis=-1), [C("a b")], sizes=(2, 4),
         id="gradient-complex"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.convolve(a, v, "same"), [C("a"), C("b")],
         id="convolve-complex"),
    Spec(("pad", "getitem", "matmul"), lambda a, v: np.correlate(a, v, "full"), [C("a"), C("b")],
         id="correlate-complex"),
    Spec(("searchsorted", "getitem"), lambda x, fp: np.interp(x, _xp(x), fp), [F("a"), C("4")],
         id="interp-complex-fp"),
    Spec("searchsorted", lambda a, v: np.searchsorted(np.sort(a), v), [F("c"), F("a b")],
         nondiff=True, id="searchsorted"),
    Spec("searchsorted", lambda a, v: np.searchsorted(np.sort(a), v, side="right"),
         [F("a"), F("b")], nondiff=True, id="searchsorted-traced-a"),
]
