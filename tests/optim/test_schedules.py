"""Schedules: values at the key steps against optax's closed forms."""
import math

import numpy as np
import pytest

from funcflux import optim


def test_constant():
    s = optim.constant(0.3)
    assert [s(n) for n in (0, 1, 10 ** 6)] == [0.3] * 3
    assert optim.constant_schedule is optim.constant


def test_linear_key_steps():
    s = optim.linear(1.0, 0.1, transition_steps=10)
    assert s(0) == 1.0
    assert s(5) == pytest.approx(0.55)
    assert s(10) == pytest.approx(0.1)
    assert s(1000) == pytest.approx(0.1)
    assert s(-5) == 1.0  # clipped to the start
    assert optim.linear_schedule is optim.linear


def test_linear_with_begin_and_increasing():
    s = optim.linear(0.0, 2.0, transition_steps=4, transition_begin=3)
    assert [s(n) for n in (0, 3, 4, 5, 7, 9)] == pytest.approx([0, 0, 0.5, 1.0, 2.0, 2.0])


def test_linear_zero_steps_warns_and_is_constant():
    with pytest.warns(UserWarning, match="transition_steps"):
        s = optim.linear(1.0, 0.0, transition_steps=0)
    assert s(100) == 1.0


def test_polynomial():
    s = optim.polynomial(1.0, 0.0, power=2, transition_steps=10)
    assert s(5) == pytest.approx(0.25)
    assert s(10) == 0.0


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    s = optim.exponential_decay(2.0, transition_steps=10, decay_rate=0.5, transition_begin=5,
                                staircase=staircase)
    assert s(0) == 2.0 and s(5) == 2.0
    assert s(15) == pytest.approx(1.0)
    assert s(25) == pytest.approx(0.5)
    expected = 2.0 * 0.5 ** (1 if staircase else 1.2)
    assert s(17) == pytest.approx(expected)


def test_exponential_decay_end_value_bounds():
    down = optim.exponential_decay(1.0, 1, 0.5, end_value=0.2)
    assert down(1) == 0.5 and down(10) == 0.2
    up = optim.exponential_decay(1.0, 1, 2.0, end_value=5.0)
    assert up(2) == 4.0 and up(10) == 5.0
    with pytest.raises(ValueError, match="decay_rate"):
        optim.exponential_decay(1.0, 10, 0.0)


def test_cosine_decay():
    s = optim.cosine_decay(2.0, decay_steps=100)
    assert s(0) == 2.0
    assert s(50) == pytest.approx(1.0)
    assert s(25) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s(100) == pytest.approx(0.0, abs=1e-15) and s(200) == pytest.approx(0.0, abs=1e-15)
    a = optim.cosine_decay(2.0, decay_steps=100, alpha=0.1, exponent=2.0)
    assert a(50) == pytest.approx(2.0 * (0.9 * 0.25 + 0.1))
    assert a(100) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="decay_steps"):
        optim.cosine_decay(1.0, 0)


def test_warmup_cosine_decay():
    s = optim.warmup_cosine_decay(0.1, peak_value=1.0, warmup_steps=10, decay_steps=110,
                                  end_value=0.01)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s(110) == pytest.approx(0.01)
    assert s(10 ** 5) == pytest.approx(0.01)
    assert optim.warmup_cosine_decay_schedule is optim.warmup_cosine_decay


def test_piecewise_constant():
    s = optim.piecewise_constant(1.0, {100: 0.1, 50: 0.5})
    assert [s(n) for n in (0, 49, 50, 99, 100, 10 ** 4)] == pytest.approx(
        [1.0, 1.0, 0.5, 0.5, 0.05, 0.05])
    assert optim.piecewise_constant(2.0)(7) == 2.0
    with pytest.raises(ValueError, match="non-negative"):
        optim.piecewise_constant(1.0, {5: -1.0})


def test_join_schedules():
    s = optim.join_schedules([optim.constant(1.0), optim.linear(1.0, 0.0, 10)], [5])
    assert [s(n) for n in (0, 4, 5, 10, 15)] == pytest.approx([1, 1, 1, 0.5, 0])
    with pytest.raises(ValueError, match="boundary"):
        optim.join_schedules([optim.constant(1.0)], [5])


def test_values_are_python_floats():
    for s in (optim.linear(1.0, 0.0, 10), optim.cosine_decay(1.0, 10),
              optim.exponential_decay(1.0, 10, 0.5), optim.piecewise_constant(1.0, {2: 0.5}),
              optim.warmup_cosine_decay(0.0, 1.0, 2, 10)):
        assert type(s(np.int64(3))) is float


def test_schedule_drives_an_optimiser():
    lr = optim.piecewise_constant(1.0, {2: 0.1})
    opt = optim.sgd(lr)
    state = opt.init(np.zeros(1))
    us = []
    for _ in range(4):
        u, state = opt.update(np.ones(1), state)
        us.append(float(u[0]))
    assert us == pytest.approx([-1.0, -1.0, -0.1, -0.1])


ALL_SCHEDULES = [
    optim.constant(0.3), optim.linear(1.0, 0.0, 10, transition_begin=3),
    optim.polynomial(1.0, 0.1, 2.0, 8), optim.exponential_decay(1.0, 4, 0.5, 2, True, 0.2),
    optim.exponential_decay(1.0, 4, 2.0, end_value=3.0), optim.cosine_decay(1.0, 10, 0.1, 2.0),
    optim.warmup_cosine_decay(0.0, 1.0, 3, 12, 0.05), optim.piecewise_constant(1.0, {3: 0.5, 7: 0.1}),
    optim.join_schedules([optim.constant(1.0), optim.linear(1.0, 0.0, 4)], [5]),
    optim.sgdr([dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=6)] * 2),
    optim.cosine_onecycle(10, peak_value=1.0, pct_start=0.2),
]


@pytest.mark.parametrize("k", range(len(ALL_SCHEDULES)))
def test_schedules_stage_under_jit(k):
    """No Python branch on the count: inside jit (where an optimiser's int count is traced)
    a schedule is part of the program and gives the eager values on every replay."""
    import funcflux as ff
    s = ALL_SCHEDULES[k]
    staged = ff.jit(lambda count: s(count) * np.ones(1))
    for n in range(0, 16):
        assert float(staged(n)[0]) == pytest.approx(s(n), rel=1e-12, abs=1e-15)
    assert len(staged._cache) == 1  # one trace: the count is an input, not a constant


def test_a_scheduled_optimiser_trains_under_jit():
    import funcflux as ff
    from funcflux import nn
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = nn.Dense(3, 1, rng=0)
    opt = optim.adam(optim.warmup_cosine_decay(0.0, 0.05, 2, 20))
    loss = lambda m, x, y: np.mean((m(x) - y) ** 2)
    eager = ff.train(loss, model, [(x, y)] * 5, opt, epochs=2)
    staged = ff.train(loss, model, [(x, y)] * 5, opt, epochs=2, jit=True)
    np.testing.assert_allclose(staged[0].weight, eager[0].weight, rtol=1e-5)
