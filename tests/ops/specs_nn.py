"""Spec lines for the fused nn primitives (funcflux/ops/nn.py)."""
from __future__ import annotations

import funcflux.numpy as fnp
from tests.ops.specs import F, Spec

SPECS = [
    Spec("logsumexp", lambda x: fnp.logsumexp(x), [F("a b")], id="logsumexp-all"),
    Spec("logsumexp", lambda x: fnp.logsumexp(x, axis=-1), [F("a b c")], id="logsumexp-neg"),
    Spec("logsumexp", lambda x: fnp.logsumexp(x, axis=(0, 2), keepdims=True), [F("a b c")],
         id="logsumexp-tuple-keepdims"),
    Spec("logsumexp", lambda x: fnp.logsumexp(x, axis=1, keepdims=True), [F("a b", lo=-30, hi=30)],
         id="logsumexp-wide"),
    Spec("logsumexp", lambda x: fnp.softmax(x), [F("a b")], id="softmax"),
    Spec("logsumexp", lambda x: fnp.softmax(x, axis=0), [F("a b c")], id="softmax-axis0"),
    Spec("logsumexp", lambda x: fnp.log_softmax(x), [F("a b")], id="log_softmax"),
    Spec("logsumexp", lambda x: fnp.log_softmax(x, axis=(0, -1)), [F("a b c")], id="log_softmax-tuple"),
]
