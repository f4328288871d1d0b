"""Bad input to optimisers: hyperparameters checked at construction, gradient shapes at update."""
import inspect
import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import optim

NAN, INF = math.nan, math.inf

# (constructor, argument, bad values): each bad value must raise at construction, naming the
# argument, the value and the valid range. Arguments not named get valid defaults.
LR_BAD = (-0.1, NAN, INF, -INF)
UNIT_BAD = (-0.1, 1.5, NAN, INF)           # moving-average decays: [0, 1]
ADAM_B_BAD = (-0.1, 1.0, 1.5, NAN)         # Adam's b1, b2: [0, 1) (bias correction 1 - b**t)
NONNEG_BAD = (-1e-8, NAN, INF)             # eps and friends: finite and >= 0
ALIASES = ["sgd", "adam", "adamw", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "lion",
           "lamb"]

BAD = [(name, "learning_rate", LR_BAD) for name in ALIASES] + [
    ("scale_by_learning_rate", "learning_rate", LR_BAD),
    ("sgd", "momentum", (-1.0, 1.5, NAN)),
    ("rmsprop", "momentum", (-1.0, NAN)),
    ("rmsprop", "decay", UNIT_BAD),
    ("rmsprop", "eps", NONNEG_BAD),
    ("rmsprop", "initial_scale", NONNEG_BAD),
    ("adam", "b1", ADAM_B_BAD),
    ("adam", "b2", ADAM_B_BAD),
    ("adam", "eps", NONNEG_BAD),
    ("adam", "eps_root", NONNEG_BAD),
    ("adamw", "weight_decay", NONNEG_BAD),
    ("nadam", "b1", ADAM_B_BAD),
    ("radam", "b2", ADAM_B_BAD),
    ("radam", "threshold", (NAN, INF, 4.0, 3.0, -1.0)),  # rho_t <= 4 has no rectification
    ("scale_by_radam", "threshold", (2.5, NAN)),
    ("adagrad", "initial_accumulator_value", NONNEG_BAD),
    ("adagrad", "eps", NONNEG_BAD),
    ("adadelta", "rho", UNIT_BAD),
    ("adadelta", "weight_decay", NONNEG_BAD),
    ("lion", "b1", UNIT_BAD),
    ("lion", "b2", UNIT_BAD),
    ("lion", "weight_decay", NONNEG_BAD),
    ("lamb", "b1", ADAM_B_BAD),
    ("lamb", "eps", NONNEG_BAD),
    ("scale", "step_size", (NAN, INF, -INF)),
    ("scale_by_adam", "b1", ADAM_B_BAD),
    ("scale_by_adam", "b2", ADAM_B_BAD),
    ("scale_by_adam", "eps", NONNEG_BAD),
    ("scale_by_radam", "b1", ADAM_B_BAD),
    ("scale_by_rms", "decay", UNIT_BAD),
    ("scale_by_stddev", "decay", UNIT_BAD),
    ("scale_by_stddev", "eps", NONNEG_BAD),
    ("scale_by_rss", "initial_accumulator_value", NONNEG_BAD),
    ("scale_by_adadelta", "rho", UNIT_BAD),
    ("scale_by_adadelta", "eps", NONNEG_BAD),
    ("scale_by_lion", "b1", UNIT_BAD),
    ("scale_by_trust_ratio", "min_norm", NONNEG_BAD),
    ("scale_by_trust_ratio", "trust_coefficient", NONNEG_BAD),
    ("trace", "decay", (-1.0, 1.5, NAN)),
    ("clip", "max_delta", (-1.0, NAN)),
    ("clip_by_global_norm", "max_norm", (-1.0, 0.0, NAN)),
    ("add_decayed_weights", "weight_decay", NONNEG_BAD),
]
REQUIRED = {"learning_rate": 0.1, "step_size": 1.0, "decay": 0.9, "max_delta": 1.0,
            "max_norm": 1.0}


def _build(name, arg, value):
    """``optim.<name>(arg=value)``, with valid values for the other required arguments."""
    fn = getattr(optim, name)
    params = inspect.signature(getattr(fn, "__wrapped__", fn)).parameters
    kw = {k: v for k, v in REQUIRED.items()
          if k != arg and k in params and params[k].default is inspect.Parameter.empty}
    return fn(**kw, **{arg: value})


@pytest.mark.parametrize("name, arg, values", BAD, ids=[f"{n}-{a}" for n, a, _ in BAD])
def test_bad_hyperparameters_are_rejected_at_construction(name, arg, values):
    for v in values:
        with pytest.raises(ValueError) as info:
            _build(name, arg, v)
        msg = str(info.value)
        assert f"{arg}={v!r}" in msg and "must be" in msg, msg
    # and a good value of the same argument is accepted
    good = {"learning_rate": 0.0, "momentum": 0.0, "threshold": 5.0, "step_size": -1.0,
            "max_norm": INF, "max_delta": INF}.get(arg, 0.5)
    _build(name, arg, good)


def test_message_names_argument_value_and_range():
    with pytest.raises(ValueError, match=r"b1=1\.5 is not valid; b1 must be in \[0, 1\)"):
        optim.adam(1e-3, b1=1.5)
    with pytest.raises(ValueError, match=r"max_norm=-1 is not valid; max_norm must be in "
                                         r"\(0, inf\]"):
        optim.clip_by_global_norm(-1)
    with pytest.raises(ValueError, match=r"optim.sgd: momentum=-1 is not valid; momentum "
                                         r"must be in \[0, 1\]\.$"):
        optim.sgd(0.1, momentum=-1)
    with pytest.raises(TypeError, match="learning_rate must be a real number, got '0.1'"):
        optim.scale_by_learning_rate("0.1")
    with pytest.raises(ValueError, match=r"learning_rate=-0.1 .* \[0, inf\)\. \(It may also "
                                         r"be a schedule"):
        optim.scale_by_learning_rate(-0.1)


def test_zero_d_arrays_are_numbers_and_schedules_must_be_callable():
    u, _ = optim.scale_by_learning_rate(np.array(0.5)).update(np.ones(1), optim.EmptyState())
    np.testing.assert_allclose(u, [-0.5])
    with pytest.raises(ValueError, match="learning_rate=array"):
        optim.scale_by_learning_rate(np.array(-0.5))
    with pytest.raises(TypeError, match="step_size_fn must be a function"):
        optim.scale_by_schedule(0.1)


def test_clip_by_global_norm_negative_used_to_flip_the_sign():
    # Regression: clip_by_global_norm(-1) ran and turned every update around.
    with pytest.raises(ValueError):
        optim.clip_by_global_norm(-1.0)
    u, _ = optim.clip_by_global_norm(1.0).update(np.array([3.0, 4.0]), optim.EmptyState())
    np.testing.assert_allclose(u, [0.6, 0.8])


def test_schedules_are_accepted_and_checked_per_step():
    lr = optim.linear(0.1, 0.0, 10)
    opt = optim.sgd(lr)   # a callable learning rate is not validated at construction
    s = opt.init(np.zeros(1))
    u, s = opt.update(np.ones(1), s)
    np.testing.assert_allclose(u, [-0.1])
    bad = optim.sgd(lambda n: 0.1 if n < 1 else -0.1)
    s = bad.init(np.zeros(1))
    _, s = bad.update(np.ones(1), s)
    with pytest.raises(ValueError, match="schedule gave -0.1 at step 1; a schedule must return "
                                         "a finite number >= 0"):
        bad.update(np.ones(1), s)
    nan = optim.adam(lambda n: math.nan)
    with pytest.raises(ValueError, match="gave nan at step 0"):
        nan.update(np.ones(1), nan.init(np.zeros(1)))


def test_adjust_to_a_bad_value_fails_at_the_next_update():
    opt = optim.inject_hyperparams(optim.adam)(1e-3)
    state = opt.init(np.zeros(2))
    state = optim.adjust(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match="learning_rate=-1.0 is not valid"):
        opt.update(np.ones(2), state, np.zeros(2))


# ----------------------------------------------------------------------------- gradient shapes
def _per_example(p):
    return {k: np.ones((5,) + v.shape) for k, v in p.items()}


def test_update_with_per_example_gradients_names_path_and_shapes():
    # Regression: a (5, 3) gradient for a (3,) parameter broadcast into the state and updates.
    p = {"w": np.zeros(3), "b": np.zeros(1)}
    for opt in (optim.adam(0.1), optim.sgd(0.1, momentum=0.9), optim.rmsprop(0.1),
                optim.lion(0.1), optim.adamw(0.1), optim.lamb(0.1)):
        with pytest.raises(ValueError, match=r"at \['b'\] has shape \(5, 1\), but the "
                                             r"parameter has shape \(1,\)"):
            opt.update(_per_example(p), opt.init(p), p)


def test_apply_updates_with_wrong_shapes():
    p = {"w": np.zeros(3)}
    opt = optim.sgd(0.1)   # keeps no state, but checks the shapes against the parameters
    with pytest.raises(ValueError, match=r"optim.sgd: .* at \['w'\] has shape \(5, 3\)"):
        opt.update(_per_example(p), opt.init(p), p)
    u = ff.tree.map(lambda g: -0.1 * g, _per_example(p))
    with pytest.raises(ValueError, match=r"optim.apply_updates: .* at \['w'\] has shape "
                                         r"\(5, 3\), but the parameter has shape \(3,\)"):
        optim.apply_updates(p, u)
    with pytest.raises(ValueError, match="shape"):
        optim.apply_updates({"w": np.zeros(3)}, {"w": np.float64(1.0)})


def test_step_with_wrong_shapes_names_the_model_path():
    from funcflux import nn
    model = nn.Chain(nn.Dense(2, 3, rng=0), nn.Dense(3, 1, rng=1))
    state = optim.setup(optim.sgd(0.1), model)
    g = ff.grad(lambda m: np.sum(m(np.ones((4, 2)))))(model)
    bad = ff.tree.map(lambda a: np.stack([a, a]), g)
    with pytest.raises(ValueError, match=r"optim.step: the gradient at \.layers\[0\]\.weight "
                                         r"has shape \(2, 3, 2\), but the parameter has shape "
                                         r"\(3, 2\)"):
        optim.step(state, model, bad)
    optim.step(state, model, g)   # the right shapes still work
