"""Losses against Flux's definitions: integer labels, label smoothing, agg, stability, errors."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import losses, nn
from funcflux.test_util import check_grads

R = np.random.default_rng(0)
N, C = 5, 4
LOGITS = R.normal(size=(N, C))
LABELS = np.array([0, 3, 1, 1, 2])
ONEHOT = np.eye(C)[LABELS]
PROBS = nn.softmax(LOGITS)
PRED, TARGET = R.normal(size=(N, 3)), R.normal(size=(N, 3))
EPS64 = np.finfo(np.float64).eps


def test_regression_losses():
    d = PRED - TARGET
    assert losses.mse(PRED, TARGET) == pytest.approx(np.mean(d ** 2))
    assert losses.mae(PRED, TARGET) == pytest.approx(np.mean(np.abs(d)))
    hub = np.where(np.abs(d) < 1, 0.5 * d ** 2, np.abs(d) - 0.5)
    assert losses.huber_loss(PRED, TARGET) == pytest.approx(hub.mean())
    hub2 = np.where(np.abs(d) < 0.3, 0.5 * d ** 2, 0.3 * (np.abs(d) - 0.15))
    assert losses.huber_loss(PRED, TARGET, delta=0.3) == pytest.approx(hub2.mean())
    np.testing.assert_allclose(ff.grad(losses.mse)(PRED, TARGET), 2 * d / d.size)
    for f in (losses.mse, losses.huber_loss):
        check_grads(f, (PRED, TARGET), order=2)
    check_grads(losses.mae, (PRED, TARGET), order=1)


def test_crossentropies_with_onehot_and_integer_labels():
    lce = -np.mean(np.sum(ONEHOT * (LOGITS - np.log(np.exp(LOGITS).sum(1, keepdims=True))), 1))
    assert losses.logitcrossentropy(LOGITS, ONEHOT) == pytest.approx(lce)
    assert losses.logitcrossentropy(LOGITS, LABELS) == pytest.approx(lce)
    assert losses.crossentropy(PROBS, ONEHOT) == pytest.approx(lce, rel=1e-10)
    assert losses.crossentropy(PROBS, LABELS) == pytest.approx(
        -np.mean(np.sum(ONEHOT * np.log(PROBS + EPS64), 1)))
    # d/dlogits = (softmax - y) / N
    np.testing.assert_allclose(ff.grad(losses.logitcrossentropy)(LOGITS, LABELS),
                               (PROBS - ONEHOT) / N, atol=1e-12)
    check_grads(losses.logitcrossentropy, (LOGITS, PROBS), order=2)
    check_grads(lambda p: losses.crossentropy(p, LABELS), (PROBS,), order=2)


def test_crossentropy_axis_agg_and_float32():
    per = losses.logitcrossentropy(LOGITS, LABELS, agg=None)
    assert per.shape == (N,)
    assert losses.logitcrossentropy(LOGITS, LABELS, agg=np.sum) == pytest.approx(per.sum())
    assert losses.logitcrossentropy(LOGITS.T, LABELS, axis=0) == pytest.approx(per.mean())
    seq = R.normal(size=(2, 3, C))
    labs = R.integers(0, C, size=(2, 3))
    assert losses.logitcrossentropy(seq, labs) == pytest.approx(
        losses.logitcrossentropy(seq.reshape(6, C), labs.reshape(6)))
    l32 = losses.logitcrossentropy(LOGITS.astype(np.float32), LABELS)
    assert l32.dtype == np.float32
    assert ff.grad(losses.logitcrossentropy)(LOGITS.astype(np.float32), LABELS).dtype == np.float32


def _logsoftmax_ce(z, y, axis=-1):
    """The plain definition: -sum(y * log_softmax(z)) per example."""
    logp = z - np.log(np.sum(np.exp(z - z.max(axis, keepdims=True)), axis, keepdims=True)) \
        - z.max(axis, keepdims=True)
    return -np.sum(y * logp, axis)


def test_logitcrossentropy_against_definition_every_target_kind():
    raw = R.uniform(0.0, 1.0, size=(N, C))  # rows not summing to one: weights, not probabilities
    for y in (ONEHOT, PROBS, raw):
        np.testing.assert_allclose(losses.logitcrossentropy(LOGITS, y, agg=None),
                                   _logsoftmax_ce(LOGITS, y), rtol=1e-12)
        np.testing.assert_allclose(ff.grad(losses.logitcrossentropy)(LOGITS, y),
                                   (PROBS * y.sum(1, keepdims=True) - y) / N, atol=1e-12)
        check_grads(losses.logitcrossentropy, (LOGITS, y), order=2)
    np.testing.assert_allclose(losses.logitcrossentropy(LOGITS, LABELS, agg=None),
                               _logsoftmax_ce(LOGITS, ONEHOT), rtol=1e-12)
    check_grads(lambda z: losses.logitcrossentropy(z, LABELS, agg=np.sum), (LOGITS,), order=2)
    # the class axis elsewhere, with integer labels and with one-hot targets
    z3 = R.normal(size=(2, C, 3))
    k3 = R.integers(0, C, size=(2, 3))
    oh3 = np.moveaxis(np.eye(C)[k3], -1, 1)
    want = _logsoftmax_ce(z3, oh3, axis=1)
    np.testing.assert_allclose(losses.logitcrossentropy(z3, k3, axis=1, agg=None), want, rtol=1e-12)
    np.testing.assert_allclose(losses.logitcrossentropy(z3, oh3, axis=-2, agg=None), want,
                               rtol=1e-12)
    np.testing.assert_allclose(ff.grad(losses.logitcrossentropy)(z3, k3, axis=1),
                               ff.grad(losses.logitcrossentropy)(z3, oh3, axis=1), atol=1e-12)
    # one example: logits (C,) and a 0-d label
    assert losses.logitcrossentropy(LOGITS[1], LABELS[1]) == pytest.approx(
        _logsoftmax_ce(LOGITS[1], ONEHOT[1]))


def test_logitcrossentropy_higher_derivatives_match_unfused():
    def unfused(z, y):
        return -np.mean(np.sum(y * nn.logsoftmax(z), axis=-1))
    for y in (LABELS, PROBS):
        y_dense = ONEHOT if y is LABELS else y
        h = ff.hessian(lambda z: losses.logitcrossentropy(z, y))(LOGITS)
        np.testing.assert_allclose(h, ff.hessian(lambda z: unfused(z, y_dense))(LOGITS),
                                   atol=1e-12)
        t = R.normal(size=LOGITS.shape)
        hvp = ff.jvp(ff.grad(lambda z: losses.logitcrossentropy(z, y)), (LOGITS,), (t,))[1]
        np.testing.assert_allclose(hvp, np.einsum("ijkl,kl->ij", h, t), atol=1e-12)
    # derivatives with respect to the targets too
    gy = ff.grad(losses.logitcrossentropy, argnums=1)(LOGITS, PROBS)
    np.testing.assert_allclose(gy, ff.grad(unfused, argnums=1)(LOGITS, PROBS), atol=1e-12)
    # per-example gradients under vmap, labels traced
    per = ff.vmap(ff.grad(lambda z, k: losses.logitcrossentropy(z[None], k[None])))(LOGITS, LABELS)
    np.testing.assert_allclose(per, PROBS - ONEHOT, atol=1e-12)


def test_logitcrossentropy_float32_and_masked_logits():
    z32 = LOGITS.astype(np.float32)
    for y in (LABELS, ONEHOT.astype(np.float32)):
        v, g = ff.value_and_grad(losses.logitcrossentropy)(z32, y)
        assert v.dtype == g.dtype == np.float32
        _, t = ff.jvp(lambda z: losses.logitcrossentropy(z, y), (z32,), (np.ones_like(z32),))
        assert t.dtype == np.float32
    # float64 targets promote the loss, as y * log_softmax(z) does; the gradient keeps float32
    v, g = ff.value_and_grad(losses.logitcrossentropy)(z32, PROBS)
    assert v.dtype == np.float64 and g.dtype == np.float32
    # a masked class (-inf logit) that is not the label: finite loss and gradient
    z = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, g = ff.value_and_grad(losses.logitcrossentropy)(z, np.array([2, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert loss == pytest.approx(np.mean([np.log1p(np.exp(-1.0)), np.log1p(np.exp(-2.0))]))
    np.testing.assert_array_equal(g[[0, 1], [0, 1]], 0.0)


def test_label_smoothing():
    a = 0.1
    smooth = ONEHOT * (1 - a) + a / C
    assert losses.logitcrossentropy(LOGITS, LABELS, label_smoothing=a) == pytest.approx(
        losses.logitcrossentropy(LOGITS, smooth))
    assert losses.crossentropy(PROBS, ONEHOT, label_smoothing=a) == pytest.approx(
        losses.crossentropy(PROBS, smooth))
    p = nn.sigmoid(PRED)
    yb = (TARGET > 0) * 1.0
    assert losses.binarycrossentropy(p, yb, label_smoothing=a) == pytest.approx(
        losses.binarycrossentropy(p, yb * (1 - a) + a / 2))
    np.testing.assert_allclose(losses.label_smoothing(ONEHOT, a), smooth)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.label_smoothing(ONEHOT, 2.0)


def test_binary_losses():
    p, y = nn.sigmoid(PRED), (TARGET > 0) * 1.0
    bce = np.mean(-y * np.log(p + EPS64) - (1 - y) * np.log(1 - p + EPS64))
    assert losses.binarycrossentropy(p, y) == pytest.approx(bce)
    assert losses.logitbinarycrossentropy(PRED, y) == pytest.approx(bce, rel=1e-8)
    int_targets = (TARGET > 0).astype(int)
    assert losses.logitbinarycrossentropy(PRED, int_targets) == pytest.approx(bce, rel=1e-8)
    np.testing.assert_allclose(ff.grad(losses.logitbinarycrossentropy)(PRED, y),
                               (p - y) / y.size, atol=1e-12)
    check_grads(losses.logitbinarycrossentropy, (PRED, nn.sigmoid(TARGET)), order=2)
    check_grads(lambda p: losses.binarycrossentropy(p, y), (p,), order=2)


def test_kldivergence_and_hinge():
    q = nn.softmax(R.normal(size=(N, C)))
    kl = np.mean(np.sum(q * np.log(q) - q * np.log(PROBS + EPS64), 1))
    assert losses.kldivergence(PROBS, q) == pytest.approx(kl)
    assert losses.kldivergence(PROBS, PROBS) == pytest.approx(0, abs=1e-12)
    # 0 log 0 = 0: one-hot targets give the cross-entropy, and a finite gradient
    assert losses.kldivergence(PROBS, ONEHOT) == pytest.approx(losses.crossentropy(PROBS, ONEHOT))
    g = ff.grad(lambda y: losses.kldivergence(PROBS, y))(ONEHOT)
    assert np.all(np.isfinite(g))
    check_grads(losses.kldivergence, (PROBS, q), order=2)
    y = np.sign(TARGET)
    assert losses.hinge_loss(PRED, y) == pytest.approx(np.mean(np.maximum(0, 1 - PRED * y)))
    assert losses.squared_hinge_loss(PRED, y) == pytest.approx(
        np.mean(np.maximum(0, 1 - PRED * y) ** 2))
    check_grads(lambda p: losses.squared_hinge_loss(p, y), (PRED,), order=1)


def test_stable_at_1000():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert losses.logitcrossentropy(logits, np.array([0, 0])) == pytest.approx(1000.0)
        g = ff.grad(losses.logitcrossentropy)(logits, np.array([0, 0]))
        np.testing.assert_allclose(g, [[0, 0], [-0.5, 0.5]])
        z = np.array([1000.0, -1000.0])
        assert losses.logitbinarycrossentropy(z, np.array([0.0, 1.0])) == pytest.approx(1000.0)
        np.testing.assert_allclose(
            ff.grad(losses.logitbinarycrossentropy)(z, np.array([0.0, 1.0])), [0.5, -0.5])


def test_vmap_with_traced_integer_labels():
    logits = R.normal(size=(3, N, C))
    labels = R.integers(0, C, size=(3, N))
    out = ff.vmap(losses.logitcrossentropy)(logits, labels)
    loop = [losses.logitcrossentropy(a, b) for a, b in zip(logits, labels)]
    np.testing.assert_allclose(out, loop)


def test_errors():
    with pytest.raises(ValueError, match=r"^mse: prediction of shape \(5, 1\) and target of shape "
                                         r"\(5,\) differ"):
        losses.mse(np.ones((5, 1)), np.ones(5))
    with pytest.raises(ValueError, match=r"logitcrossentropy: .*or integer labels of shape \(5,\)"):
        losses.logitcrossentropy(LOGITS, np.ones((5, 3)))
    with pytest.raises(ValueError, match="logitcrossentropy"):
        losses.logitcrossentropy(LOGITS, np.array([0.0, 1, 2, 3, 0]))  # float labels: not ids
    with pytest.raises(IndexError, match="class label 4 is out of range for 4 classes"):
        losses.logitcrossentropy(LOGITS, np.array([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="binarycrossentropy"):
        losses.binarycrossentropy(np.ones(3) / 2, np.ones(4))


EMPTY = {  # each loss on an empty batch: (prediction, target)
    "mse": (np.ones((0, 3)), np.ones((0, 3))),
    "mae": (np.ones((0, 3)), np.ones((0, 3))),
    "huber_loss": (np.ones((0, 3)), np.ones((0, 3))),
    "crossentropy": (np.ones((0, C)) / C, np.zeros(0, int)),
    "logitcrossentropy": (np.ones((0, C)), np.zeros(0, int)),
    "kldivergence": (np.ones((0, C)) / C, np.ones((0, C)) / C),
    "binarycrossentropy": (np.ones(0) / 2, np.ones(0)),
    "logitbinarycrossentropy": (np.ones(0), np.ones(0)),
    "hinge_loss": (np.ones((0, 1)), np.ones((0, 1))),
    "squared_hinge_loss": (np.ones((0, 1)), np.ones((0, 1))),
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_batch_is_an_error_not_nan(name):
    # Regression: the mean over zero examples was a silent NaN.
    assert set(EMPTY) == set(losses.__all__) - {"label_smoothing"}   # every loss is swept
    f = getattr(losses, name)
    yhat, y = EMPTY[name]
    shape = str(yhat.shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^{name}: the prediction has shape {shape}, with no "
                                         r"examples; their mean is undefined"):
        f(yhat, y)
    with pytest.raises(ValueError, match=name):
        ff.grad(f)(yhat, y)
    assert float(f(yhat, y, agg=np.sum)) == 0.0     # a sum over nothing is 0, as NumPy says
    assert f(yhat, y, agg=None).size == 0
