"""The aliases: optax's signatures and defaults, and that each one trains."""
import inspect

import numpy as np
import pytest

import funcflux as ff
from funcflux import optim

# optax's defaults (alias.py), learning rate aside.
DEFAULTS = {
    "sgd": {"momentum": None, "nesterov": False},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "weight_decay": 1e-4,
              "mask": None},
    "nadam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
    "radam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "threshold": 5.0},
    "rmsprop": {"decay": 0.9, "eps": 1e-8, "initial_scale": 0.0, "centered": False,
                "momentum": None, "nesterov": False},
    "adagrad": {"initial_accumulator_value": 0.1, "eps": 1e-7},
    "adadelta": {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
    "lion": {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3},
    "lamb": {"b1": 0.9, "b2": 0.999, "eps": 1e-6, "eps_root": 0.0, "weight_decay": 0.0},
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_match_optax(name):
    sig = inspect.signature(getattr(optim, name))
    assert list(sig.parameters)[0] == "learning_rate"
    for arg, value in DEFAULTS[name].items():
        assert sig.parameters[arg].default == value, (name, arg)


ALIASES = {
    "sgd": lambda: optim.sgd(0.05, momentum=0.9),
    "adam": lambda: optim.adam(0.05),
    "adamw": lambda: optim.adamw(0.05),
    "nadam": lambda: optim.nadam(0.05),
    "radam": lambda: optim.radam(0.05),
    "rmsprop": lambda: optim.rmsprop(0.05),
    "adagrad": lambda: optim.adagrad(0.3),
    "adadelta": lambda: optim.adadelta(10.0),
    "lion": lambda: optim.lion(0.03, b2=0.9),
    "lamb": lambda: optim.lamb(0.05),
}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_each_alias_reduces_a_quadratic(name):
    a = np.array([1.0, 3.0, 0.5])
    loss = lambda p: np.sum(a * (p["x"] - 1.0) ** 2) + np.sum(p["y"] ** 2)
    params = {"x": np.array([3.0, -2.0, 0.0]), "y": np.array([[1.0, -1.0]])}
    opt = ALIASES[name]()
    state = opt.init(params)
    start = loss(params)
    for _ in range(100):
        updates, state = opt.update(ff.grad(loss)(params), state, params)
        params = optim.apply_updates(params, updates)
    assert loss(params) < 0.2 * start, (name, loss(params), start)


def test_linear_regression_with_adam():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    true_w, true_b = np.float32([[2.0], [-1.0], [0.5]]), np.float32([0.3])
    y = x @ true_w + true_b + np.float32(0.01) * rng.standard_normal((200, 1)).astype(np.float32)
    params = {"w": np.zeros((3, 1), np.float32), "b": np.zeros(1, np.float32)}

    def loss(p, x, y):
        return np.mean((x @ p["w"] + p["b"] - y) ** 2)

    opt = optim.adam(0.05)
    state = opt.init(params)
    for _ in range(300):
        grads = ff.grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    assert loss(params, x, y) < 1e-3
    np.testing.assert_allclose(params["w"], true_w, atol=0.02)
    assert params["w"].dtype == np.float32


def test_adam_with_warmup_cosine_schedule_trains():
    params = np.array([5.0, -5.0])
    opt = optim.adam(optim.warmup_cosine_decay(0.0, 0.5, 10, 200))
    state = opt.init(params)
    for _ in range(200):
        updates, state = opt.update(2 * params, state, params)
        params = optim.apply_updates(params, updates)
    assert np.all(np.abs(params) < 0.05)
