"""Spec lines for the fused nn primitives (funcflux/ops/nn.py)."""
from __future__ import annotations

import funcflux.numpy as fnp
from funcflux import losses, nn
from funcflux.ops.nn import dense, softmax_cross_entropy as xent
from funcflux.ops.nn import softmax_xent_labels_grad_p as xent_grad
from tests.ops.specs import F, I, Spec

# Probability targets: any non-negative weights (rows need not sum to one).
P = dict(lo=0.0, hi=1.0)

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
    # relu: values kept apart from the kink at 0
    Spec("relu", lambda x: nn.relu(x), [F("a b", distinct=True)]),
    Spec("relu", lambda x: nn.relu(x) * x, [F("a", distinct=True)], id="relu-times-x"),
    # dense: x of ndim 1, 2, 3, with and without a bias
    Spec("dense", lambda x, w, b: dense(x, w, b), [F("i"), F("o i"), F("o")], id="dense-1d"),
    Spec("dense", lambda x, w: dense(x, w), [F("i"), F("o i")], id="dense-1d-nobias"),
    Spec("dense", lambda x, w, b: dense(x, w, b), [F("n i"), F("o i"), F("o")], id="dense-2d"),
    Spec("dense", lambda x, w: dense(x, w), [F("n i"), F("o i")], id="dense-2d-nobias"),
    Spec("dense", lambda x, w, b: dense(x, w, b), [F("n m i"), F("o i"), F("o")], id="dense-3d"),
    Spec("dense", lambda x, w: dense(x, w), [F("n m i"), F("o i")], id="dense-3d-nobias"),
    Spec("dense", lambda x, w, b: dense(x, w, b) * x[..., :1], [F("n 2"), F("o 2"), F("o")],
         id="dense-times-x"),
    Spec(("dense", "relu"), lambda x, w, b, v: dense(nn.relu(dense(x, w, b)), v),
         [F("n i", lo=0.5, hi=2.0), F("o i", lo=0.5, hi=2.0), F("o", lo=0.1, hi=1.0), F("k o")],
         id="dense-relu-dense"),
    # softmax cross-entropy: probability targets, several axes
    Spec("softmax_cross_entropy", lambda z, y: xent(z, y), [F("n c"), F("n c", **P)],
         id="xent-probs"),
    Spec("softmax_cross_entropy", lambda z, y: xent(z, y), [F("c"), F("c", **P)],
         id="xent-probs-1d"),
    Spec("softmax_cross_entropy", lambda z, y: xent(z, y, axis=0), [F("c n m"), F("c n m", **P)],
         id="xent-probs-axis0"),
    Spec("softmax_cross_entropy", lambda z, y: xent(z, y, axis=1), [F("n c m", lo=-30, hi=30),
                                                                     F("n c m", **P)],
         id="xent-probs-axis1-wide"),
    # ... and integer labels (the class axis has a fixed size so labels stay in range)
    Spec("softmax_cross_entropy_labels", lambda z, k: xent(z, k), [F("n 4"), I("n", 0, 3)],
         id="xent-labels"),
    Spec("softmax_cross_entropy_labels", lambda z, k: xent(z, k), [F("3"), I("", 0, 2)],
         id="xent-labels-0d"),
    Spec("softmax_cross_entropy_labels", lambda z, k: xent(z, k, axis=1),
         [F("n 3 m", lo=-30, hi=30), I("n m", 0, 2)], id="xent-labels-axis1-wide"),
    Spec("softmax_cross_entropy_labels", lambda z, k: xent(z, k, axis=0), [F("4 n"), I("n", 0, 3)],
         id="xent-labels-axis0"),
    Spec("softmax_cross_entropy_labels_grad",
         lambda ct, z, k: xent_grad(ct, z, k, axis=1), [F("n"), F("n 4"), I("n", 0, 3)],
         id="xent-labels-grad"),
    Spec("softmax_cross_entropy_labels_grad",
         lambda ct, z, k: xent_grad(ct, z, k, axis=0), [F("n"), F("3 n"), I("n", 0, 2)],
         id="xent-labels-grad-axis0"),
    Spec("softmax_cross_entropy_labels_grad",
         lambda ct, z, k: xent_grad(ct, z, k, axis=0), [F(""), F("3"), I("", 0, 2)],
         id="xent-labels-grad-1d"),
    # through the loss: mean, label smoothing (probability targets), sum
    Spec("softmax_cross_entropy_labels", lambda z, k: losses.logitcrossentropy(z, k),
         [F("n 3"), I("n", 0, 2)], id="logitcrossentropy-labels"),
    Spec("softmax_cross_entropy", lambda z, k: losses.logitcrossentropy(z, k, label_smoothing=0.1,
                                                                         agg=fnp.sum),
         [F("n 3"), I("n", 0, 2)], id="logitcrossentropy-smoothing"),
]
