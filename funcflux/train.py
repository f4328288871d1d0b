"""A training loop for when the explicit one gets repetitive: ``ff.train``.

The first way to train is the explicit loop, five lines you can read and
change (see ``funcflux.optim``)::

    state = opt.init(params)
    for x, y in data.DataLoader((X, Y), batchsize=32, shuffle=True, rng=0):
        g = ff.grad(loss)(params, x, y)
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)

``ff.train(loss, model, loader, opt, epochs=...)`` runs the same loop through
``optim.setup``/``optim.step`` (so a functor's non-trainable children are left
alone and tied arrays stay tied), with a progress bar, per-epoch history and
callbacks that can stop early. It returns new values; the model passed in is
not changed.

Under MPI (see ``funcflux.distributed``) the progress bar shows on rank 0
only, and the history holds the means over all ranks' steps, the same on
every rank, so callbacks decide alike everywhere (a rank that stops alone
would leave the others waiting in a collective).

>>> import numpy as np, funcflux as ff
>>> from funcflux import data, optim
>>> X = np.linspace(-1, 1, 32)[:, None]; Y = 3 * X
>>> loss = lambda p, x, y: np.mean((x * p["a"] - y) ** 2)
>>> p, state, hist = ff.train(loss, {"a": np.zeros(1)}, data.DataLoader((X, Y), batchsize=8),
...                           optim.sgd(0.5), epochs=20, progress=False)
>>> round(float(p["a"][0]), 3), len(hist["loss"])
(3.0, 20)
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

from . import distributed as dist
from . import optim, tree
from . import random as frandom
from .data import DataLoader
from .optim.base import is_transformation
from .optim.setup import NOT_AN_OPTIMISER, OptimiserState
from .transforms.reverse import value_and_grad
from .transforms.staging import jit as staged_jit

__all__ = ["train", "StopTraining", "EpochInfo", "plot_history"]

NO_BATCHES = ("ff.train: the data gave no batches in epoch {epoch}. Give an iterable of batches "
              "that can be iterated once per epoch (a DataLoader, or a list of batches); a "
              "generator is used up after the first epoch.")
JIT_RNG = ("ff.train(jit=True) with a NumPy seed or generator as rng=: the loss would draw "
           "from it once, while the step is traced, and every later step would reuse those "
           "draws (the same dropout mask each time). Pass a key, rng=ff.random.key(0): each "
           "step then gets its own key, an input of the staged step.")
NOT_FINITE = ("ff.train: the loss is {value} at epoch {epoch}, step {step} of the epoch ({total} "
              "steps done in all); stopped before applying that step. The model, optimiser "
              "state and history of the last finished step are on this error, as "
              "err.train_result. A learning rate too high, a log or division at 0, or bad "
              "data (NaN in a batch) are the usual causes.")
AUX_MODEL = ("ff.train: aux['model'] should be the new model (the model's structure, e.g. from "
             "nn.apply), but its structure differs from the model's: {got} against {want}.")
OPT_OR_STATE = (" Or pass the state returned by an earlier ff.train or optim.setup to continue "
                "training.")
NO_VAL_BATCHES = ("ff.train: val_data gave no batches at epoch {epoch}. Give an iterable of "
                  "batches that can be iterated at every validation (a DataLoader, or a list); "
                  "a generator is used up after the first.")
NOT_FINITE_VAL = ("ff.train: the validation loss is {value} at epoch {epoch} (batch {batch} of "
                  "val_data). Training stopped after that epoch's steps; the work is on this "
                  "error, as err.train_result.")
NO_MATPLOTLIB = ("plot_history needs matplotlib, which is not installed: pip install "
                 "funcflux[examples] (or pip install matplotlib).")


class StopTraining(Exception):
    """Raise it in a callback (or in ``loss``) to end ``ff.train`` early, keeping what was done."""


class EpochInfo(NamedTuple):
    """What a callback receives at the end of each epoch."""
    epoch: int        # epochs completed, 1 after the first
    step: int         # optimiser steps taken so far
    loss: float       # this epoch's mean loss
    model: Any        # the model now
    state: Any        # the optimiser state now (an optim.OptimiserState)
    history: dict     # per-epoch lists so far, as returned
    val_loss: float | None = None  # this epoch's validation loss (None: no validation ran)


def _progress_bar(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    try:  # optional: silent without tqdm
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True)


def _scalar_aux(aux: Any) -> dict | None:
    """``aux`` as ``{name: float}`` when it is a dict of scalars, else None."""
    if not isinstance(aux, dict):
        return None
    out = {}
    for k, v in aux.items():
        if isinstance(v, numbers.Number) or (hasattr(v, "shape") and tuple(v.shape) == ()):
            out["aux_loss" if k == "loss" else str(k)] = float(v)
    return out


def _carried_model(aux: Any, td: tree.PyTreeDef, shapes: list) -> Any:
    """The new model that ``aux`` carries, or None (the has_aux contract of ``train``).

    ``aux`` carries a model when it is one (the model's structure and leaf
    shapes: what ``nn.apply`` returns) or when it is a dict with a ``"model"``
    entry, which must then be one.
    """
    named = isinstance(aux, dict) and "model" in aux
    x = aux["model"] if named else aux
    if x is None or (not named and type(x) is not td.node):
        return None
    leaves, xtd = tree.flatten(x)
    same = xtd == td and all(tuple(getattr(a, "shape", ())) == s for a, s in zip(leaves, shapes))
    if same:
        return x
    if named:
        raise ValueError(AUX_MODEL.format(got=xtd, want=td))
    return None


def _record(history: dict, sums: dict, n: int, epoch: int, means: dict | None = None) -> None:
    """Append an epoch's means to ``history`` (NaN for keys it did not report): the sums
    over its ``n`` steps divided by ``n``, and ``means`` (validation) as they are."""
    for k, v in [(k, v / n) for k, v in sums.items()] + list((means or {}).items()):
        # An aux key that first shows up late is padded with NaN for earlier epochs.
        history.setdefault(k, [math.nan] * (epoch - 1)).append(v)
    for k in history:
        if len(history[k]) < epoch:
            history[k].append(math.nan)


def _give_back(data: Any, pending: bool) -> None:
    """A DataLoader's last batch, handed out but not stepped on, counts as not done: its
    ``state_dict()`` then resumes with it (see DataLoader's "Resuming")."""
    if pending and isinstance(data, DataLoader):
        data._give_back()


def _splat(batch: Any) -> tuple:
    return batch if type(batch) is tuple or type(batch) is list else (batch,)


def train(loss: Callable[..., Any], model: Any, data: Iterable[Any], opt: Any, *,
          epochs: int = 1, callbacks: Sequence[Callable[[EpochInfo], Any]] = (),
          progress: bool = True, has_aux: bool = False, rng: Any = None,
          distributed: bool | None = None, jit: bool = False, val_data: Any = None,
          val_loss: Callable[..., Any] | None = None, val_every: int = 1
          ) -> tuple[Any, Any, dict]:
    """Train ``model`` on ``data`` for ``epochs`` epochs; return ``(model, state, history)``.

    Args:
      loss: ``loss(model, *batch) -> scalar``, or ``-> (scalar, aux)`` with
        ``has_aux=True``. A batch that is a plain tuple or list is splatted
        (``(x, y)`` gives ``loss(model, x, y)``); anything else is passed as
        one argument. A loss that is NaN or infinite stops training with a
        ``FloatingPointError`` naming the epoch and step, before that step
        is applied.
      model: any pytree or functor model; it is not modified.
      data: an iterable of batches, iterated once per epoch (a
        ``funcflux.data.DataLoader`` reshuffles at each).
      opt: an optimiser (``optim.adam(1e-3)``), or the state returned by an
        earlier ``train`` or ``optim.setup`` to continue where it stopped.
      epochs: how many passes over ``data``.
      callbacks: functions ``cb(info)`` called at the end of every epoch with
        an :class:`EpochInfo`. Returning ``True`` (or raising
        :class:`StopTraining`) stops training after that epoch. Raising
        ``StopTraining`` inside ``loss`` stops at once; the steps taken so
        far are kept.
      progress: show a progress bar (elapsed time, ETA, running mean loss of
        the epoch) when ``tqdm`` is installed; silent otherwise.
      has_aux: ``loss`` returns ``(scalar, aux)``. When ``aux`` is a dict of
        scalars, their per-epoch means join the history under their keys
        (a key ``"loss"`` becomes ``"aux_loss"``). State: when ``aux`` is
        the new model (the model's structure and shapes, as ``nn.apply``
        returns it with BatchNorm's moved statistics), or a dict with the new
        model under ``"model"`` beside scalar metrics, that model is the one
        stepped, as in the explicit loop ``optim.step(state, aux, grads)``.
      rng: a key (``ff.random.key(seed)``), a seed or a ``np.random.Generator``;
        when given, ``loss`` is called with ``rng=`` (for dropout). A key gives
        step ``k`` (counted from 0 over the whole run) the key
        ``ff.random.fold_in(rng, k)``; a seed or generator gives the one generator,
        advancing from step to step. Either way runs are reproducible.
      distributed: average the history over MPI ranks (one small collective
        per epoch). ``None`` (default): when the world has more than one
        rank. Pass ``False`` when the ranks train separate models. The
        gradients are averaged by the optimiser, not here:
        ``optim.chain(dist.average_gradients(), ...)``.
      jit: stage the step (gradient and optimiser update) with ``ff.jit``: traced
        on the first batch, replayed on the others (a batch of another shape, such
        as a short last one, traces once more). Values and history are those of
        the eager loop. With ``rng=`` only as a key (a NumPy generator would be
        read once, while tracing: every step would get the same dropout mask); not with
        gradients averaged over MPI ranks inside the optimiser (a collective needs
        values); both raise. See docs/staging.md.
      val_data: batches to evaluate the model on after every ``val_every``-th
        epoch and after the last (also after a stop), without gradients or
        updates: the mean over its batches goes into ``history["val_loss"]``
        (``NaN`` for epochs without validation, so every list has one entry
        per epoch) and into :class:`EpochInfo` ``.val_loss`` (stop early on it
        in a callback). With ``has_aux=True`` and a dict of scalars as aux,
        their means go in as ``"val_<name>"``. Under ``jit=True`` the
        evaluation is staged too.
      val_loss: ``val_loss(model, *batch)`` used for validation, a scalar or
        a pair ``(scalar, aux)``; default ``loss``. It is called without
        ``rng``: give a ``val_loss`` without dropout when ``loss`` needs a
        generator.
      val_every: validate every this many epochs (an int >= 1).

    Returns:
      ``(model, state, history)``: the trained model, the optimiser state
      (an ``optim.OptimiserState``, which ``train`` and ``optim.step``
      accept to continue), and ``{"loss": [mean loss per epoch], ...}``,
      each mean taken over the epoch's steps (``"val_loss"`` beside it with
      ``val_data``). :func:`plot_history` draws it.

    Raises:
      FloatingPointError: the loss was NaN or infinite; the message names the
        epoch and the step, and that step was not applied.
      KeyboardInterrupt: Ctrl-C. It and any exception from ``loss``, a
        callback or the data leave ``train`` with the work kept on them:
        ``err.train_result`` is ``(model, state, history)`` as of the last
        finished step (the history's last entries are the means over the
        finished steps of the interrupted epoch).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"ff.train: epochs must be an int >= 0, got {epochs!r}")
    if callable(callbacks):
        callbacks = (callbacks,)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"ff.train: callbacks must be callables cb(info), got {cb!r}")
    if isinstance(val_every, bool) or not isinstance(val_every, numbers.Integral) \
            or val_every < 1:
        raise ValueError(f"ff.train: val_every must be an int >= 1, got {val_every!r}")
    if val_loss is not None and not callable(val_loss):
        raise TypeError(f"ff.train: val_loss must be a function val_loss(model, *batch), got "
                        f"{val_loss!r}")
    if not isinstance(opt, OptimiserState) and not is_transformation(opt):
        raise TypeError(NOT_AN_OPTIMISER.format(fn="ff.train", kind=type(opt).__name__)
                        + OPT_OR_STATE)
    state = opt if isinstance(opt, OptimiserState) else optim.setup(opt, model)
    vg = value_and_grad(loss, has_aux=has_aux)
    key = rng if rng is not None and frandom.is_key(rng) else None
    gen = None if rng is None or key is not None else (
        rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng))
    if jit and gen is not None:
        raise ValueError(JIT_RNG)
    extra = {} if gen is None else {"rng": gen}
    history: dict = {"loss": []} if val_data is None else {"loss": [], "val_loss": []}
    total = epochs * len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    spread = dist.size() > 1 if distributed is None else bool(distributed)
    bar = _progress_bar(total, progress and dist.rank() == 0)
    step = 0
    model_leaves, model_td = tree.flatten(model)
    shapes = [tuple(getattr(a, "shape", ())) for a in model_leaves]

    def one_step(state: Any, model: Any, step_key: Any, *args: Any) -> tuple:
        """Gradient and update of one batch: ``(loss, aux, new state, new model)``."""
        out, grads = vg(model, *args, **(extra if step_key is None else {"rng": step_key}))
        stepped, aux = model, None
        if has_aux:
            out, aux = out
            carried = _carried_model(aux, model_td, shapes)
            if carried is not None:
                stepped = carried
        return (out, aux) + tuple(optim.step(state, stepped, grads))

    run_step = staged_jit(one_step) if jit else one_step
    evaluate = val_loss if val_loss is not None else loss
    run_eval = staged_jit(evaluate) if jit and val_data is not None else evaluate

    def validate(model: Any, epoch: int) -> dict:
        """The validation means at this epoch: ``{"val_loss": ..., "val_<aux>": ...}``."""
        vsums: dict = {}
        vn = 0
        for batch in val_data:
            out = run_eval(model, *_splat(batch))
            aux = None
            if type(out) is tuple and len(out) == 2:  # (scalar, aux), as loss with has_aux
                out, aux = out
            value = float(out)
            if not math.isfinite(value):
                raise FloatingPointError(NOT_FINITE_VAL.format(value=value, epoch=epoch,
                                                               batch=vn + 1))
            vsums["val_loss"] = vsums.get("val_loss", 0.0) + value
            for k, v in (_scalar_aux(aux) or {}).items():
                key = "val_" + ("aux_loss" if k == "aux_loss" else k)
                vsums[key] = vsums.get(key, 0.0) + v
            vn += 1
        if vn == 0:
            raise ValueError(NO_VAL_BATCHES.format(epoch=epoch))
        if spread:
            vsums, vn = dist.allreduce((vsums, vn), "sum")
        return {k: v / vn for k, v in vsums.items()}

    sums: dict = {}
    n = 0
    pending = False  # a batch handed out whose step was not applied
    recorded = True  # whether the current epoch's means are in the history
    try:
        for epoch in range(1, epochs + 1):
            sums = {}
            n = 0
            recorded = False
            stop = False
            try:
                for batch in data:
                    pending = True  # handed out by the data, its step not applied yet
                    args = _splat(batch)
                    step_key = None if key is None else frandom.fold_in(key, step)
                    out, aux, new_state, new_model = run_step(state, model, step_key, *args)
                    value = float(out)
                    if not math.isfinite(value):  # the step is computed, not applied
                        raise FloatingPointError(NOT_FINITE.format(
                            value=value, epoch=epoch, step=n + 1, total=step))
                    state, model = new_state, new_model
                    pending = False
                    if has_aux:
                        for k, v in (_scalar_aux(aux) or {}).items():
                            sums[k] = sums.get(k, 0.0) + v
                    sums["loss"] = sums.get("loss", 0.0) + value
                    n += 1
                    step += 1
                    if bar is not None:
                        bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
                        bar.set_postfix(loss=f"{sums['loss'] / n:.4g}", refresh=False)
                        bar.update(1)
            except StopTraining:
                stop = True
                _give_back(data, pending)
                pending = False
            if n == 0:
                if stop:
                    recorded = True
                    break
                raise ValueError(NO_BATCHES.format(epoch=epoch))
            if spread:  # the mean over every rank's steps
                sums, n = dist.allreduce((sums, n), "sum")
            val: dict = {}
            if val_data is not None and (epoch % val_every == 0 or epoch == epochs or stop):
                val = validate(model, epoch)
            _record(history, sums, n, epoch, val)
            recorded = True
            if stop:
                break
            info = EpochInfo(epoch, step, history["loss"][-1], model, state, history,
                             val.get("val_loss"))
            try:
                for cb in callbacks:
                    r = cb(info)
                    if r is True or r is np.True_:
                        stop = True
            except StopTraining:
                stop = True
            if stop:
                break
    except BaseException as err:  # Ctrl-C included: keep the finished steps on the error
        _give_back(data, pending)
        if not recorded and n > 0:  # this rank's means over the epoch's finished steps
            _record(history, sums, n, epoch)
        try:
            err.train_result = (model, state, history)  # type: ignore[attr-defined]
        except AttributeError:  # an exception type that takes no attributes
            pass
        raise
    finally:
        if bar is not None:
            bar.close()
    return model, state, history


def plot_history(history: dict, path: Any = None, *, keys: Sequence[str] | None = None,
                 logy: bool = False) -> Any:
    """Draw the curves of a training history (what :func:`train` returns); return the figure.

    One panel per metric, its training and validation curves together (``loss``
    with ``val_loss``, ``acc`` with ``val_acc``...), against the epoch (from 1).
    Epochs without a value (``NaN``: no validation that epoch) are left out of
    the line. Needs matplotlib (``pip install funcflux[examples]``); the figure
    is a ``matplotlib.figure.Figure`` made without pyplot (no window, no global
    state): a notebook shows it, and ``path`` saves it (``.png``, ``.pdf``,
    ``.svg``...). Exported as ``ff.plot_history``.

    Args:
      history: ``{name: [value per epoch]}``.
      path: where to save the figure, or ``None``.
      keys: the entries to draw (default: every list of numbers).
      logy: a logarithmic y axis.

    >>> import funcflux as ff
    >>> fig = ff.plot_history({"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, float("nan"), 0.4]})
    >>> [line.get_label() for line in fig.axes[0].lines]
    ['loss', 'val_loss']
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(NO_MATPLOTLIB) from None
    if not isinstance(history, dict):
        raise TypeError(f"plot_history: history must be a dict {{name: [value per epoch]}} "
                        f"(the third value ff.train returns), got {type(history).__name__}")
    if keys is None:
        keys = [k for k, v in history.items() if isinstance(v, (list, tuple))
                and all(isinstance(x, numbers.Real) for x in v)]
    missing = [k for k in keys if k not in history]
    if missing:
        raise KeyError(f"plot_history: {missing} not in the history; it has {sorted(history)}")
    panels: dict = {}  # metric -> its keys, "val_<metric>" in the metric's panel
    for k in keys:
        panels.setdefault(k[4:] if k.startswith("val_") else k, []).append(k)
    fig = Figure(figsize=(5.0 * max(len(panels), 1), 3.5), layout="constrained")
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, (metric, names) in zip(axes, panels.items()):
        for k in names:
            pts = [(i + 1, float(v)) for i, v in enumerate(history[k]) if math.isfinite(v)]
            # markers where a line alone would hide points (gaps, a single epoch)
            gaps = len(pts) < len(history[k]) or len(pts) < 2
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o" if gaps else None,
                    label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if logy:
            ax.set_yscale("log")
        ax.legend()
    if path is not None:
        fig.savefig(path)
    return fig
