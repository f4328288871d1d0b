"""Equinox's filters: split a model into the part a transform sees and the rest.

``partition(model, is_inexact_array)`` returns two trees of the model's structure:
one holding the floating-point arrays (``None`` in every other place), one holding
everything else (``None`` where the arrays were). A transform takes the first;
``combine`` puts the two back together. So ``grad`` over part of a model is one line:

>>> import numpy as np, funcflux as ff
>>> model = {"w": np.array([1.0, 2.0]), "steps": np.array(3), "act": "tanh"}
>>> params, static = ff.partition(model, ff.is_inexact_array)
>>> params
{'act': None, 'steps': None, 'w': array([1., 2.])}
>>> ff.grad(lambda p: np.sum(ff.combine(p, static)["w"] ** 2))(params)
{'act': None, 'steps': None, 'w': array([2., 4.])}

The trees are ordinary pytrees (``None`` is a node with no leaf, so the holes pass
through every transform), and functor models (``nn.Dense``...) split and combine
like dicts: their children are the leaves, their configuration stays in both halves.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .core import backend
from .core.trace import Tracer
from . import tree as _tree

__all__ = ["partition", "combine", "is_array", "is_inexact_array", "is_array_like"]

BAD_SPEC = ("partition: filter_spec must be a bool, a function of a leaf returning a bool, or "
            "a pytree of those that is a prefix of the tree; found {what} at {where}.")


def is_array(element: Any) -> bool:
    """Whether ``element`` is an array: a NumPy array or scalar, a device (CuPy) array, or
    a traced value inside a transform. Python numbers are not.

    >>> import numpy as np, funcflux as ff
    >>> ff.is_array(np.ones(2)), ff.is_array(np.int32(1)), ff.is_array(1.0)
    (True, True, False)
    """
    return isinstance(element, (np.ndarray, np.generic, Tracer)) or \
        type(element) in backend._MODULES


def is_inexact_array(element: Any) -> bool:
    """Whether ``element`` is an array (:func:`is_array`) of a floating-point or complex
    dtype: what gradients are taken with respect to.

    >>> import numpy as np, funcflux as ff
    >>> ff.is_inexact_array(np.ones(2)), ff.is_inexact_array(np.arange(2)), ff.is_inexact_array(1.0)
    (True, False, False)
    """
    return is_array(element) and getattr(element.dtype, "kind", "") in ("f", "c")


def is_array_like(element: Any) -> bool:
    """Whether ``element`` is an array (:func:`is_array`) or a Python number (``bool``,
    ``int``, ``float``, ``complex``).

    >>> import numpy as np, funcflux as ff
    >>> ff.is_array_like(1.0), ff.is_array_like(np.ones(2)), ff.is_array_like("tanh")
    (True, True, False)
    """
    return is_array(element) or isinstance(element, (bool, int, float, complex))


def _mask_tree(filter_spec: Any, pytree: Any, is_leaf: Callable[[Any], bool] | None) -> list:
    """One bool per leaf of ``pytree``, from the prefix tree ``filter_spec``."""
    spec_leaves, spec_def = _tree.flatten(filter_spec)
    try:
        subtrees = _tree.flatten_up_to(spec_def, pytree, "the tree given to partition")
    except ValueError as e:
        raise ValueError(f"partition: filter_spec is not a prefix of the tree's structure: "
                         f"{e}") from None
    masks: list = []
    for (path, spec), sub in zip(_tree.leaves_with_path(filter_spec), subtrees):
        sub_leaves = _tree.leaves(sub, is_leaf)
        if isinstance(spec, (bool, np.bool_)):
            masks.extend([bool(spec)] * len(sub_leaves))
        elif callable(spec):
            for x in sub_leaves:
                m = spec(x)
                if not isinstance(m, (bool, np.bool_)):
                    raise TypeError(f"partition: the filter {getattr(spec, '__name__', spec)!r} "
                                    f"returned {type(m).__name__}, not a bool, for a leaf of "
                                    f"type {type(x).__name__}.")
                masks.append(bool(m))
        else:
            raise TypeError(BAD_SPEC.format(what=f"a {type(spec).__name__}",
                                            where=_tree.keystr(path) or "the root"))
    return masks


def partition(pytree: Any, filter_spec: Any, replace: Any = None,
              is_leaf: Callable[[Any], bool] | None = None) -> tuple[Any, Any]:
    """Split ``pytree`` in two trees of its structure: ``(kept, rest)``.

    ``filter_spec`` is a bool, a function ``leaf -> bool`` (``is_inexact_array``...), or
    a pytree of those that is a prefix of ``pytree`` (one filter per part). ``kept``
    holds the leaves where the filter is true and ``replace`` elsewhere; ``rest`` the
    others. ``is_leaf`` stops the walk early, as in ``tree.flatten``. ``None`` holes
    of the input stay holes in both.

    >>> import numpy as np, funcflux as ff
    >>> ff.partition((np.ones(1), 2, "relu"), ff.is_array)
    ((array([1.]), None, None), (None, 2, 'relu'))
    """
    lv, td = _tree.flatten(pytree, is_leaf)
    masks = _mask_tree(filter_spec, pytree, is_leaf)
    kept = _tree.unflatten(td, [x if m else replace for x, m in zip(lv, masks)])
    rest = _tree.unflatten(td, [replace if m else x for x, m in zip(lv, masks)])
    return kept, rest


def _is_none(x: Any) -> bool:
    return x is None


def combine(*pytrees: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Merge trees of one structure: at each place the first value that is not ``None``
    (the inverse of :func:`partition`).

    >>> import numpy as np, funcflux as ff
    >>> ff.combine((np.ones(1), None, None), (None, 2, "relu"))
    (array([1.]), 2, 'relu')
    """
    if not pytrees:
        raise TypeError("combine needs at least one tree.")
    leaf = _is_none if is_leaf is None else (lambda x: x is None or is_leaf(x))

    def first(*xs: Any) -> Any:
        for x in xs:
            if x is not None:
                return x
        return None
    try:
        return _tree.map(first, *pytrees, is_leaf=leaf)
    except ValueError as e:
        raise ValueError(f"combine: the trees differ in structure ({e}); combine trees made "
                         "by one partition.") from None
