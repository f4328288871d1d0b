"""Spec lines for the shape family (funcflux/ops/shape.py)."""
from __future__ import annotations

import numpy as np

from tests.ops.specs import F, Spec

SPECS = [
    # reshape and its reshapes
    Spec("reshape", lambda x: np.reshape(x, (-1,)), [F("a b c")], id="reshape-flat"),
    Spec("reshape", lambda x: np.reshape(x, (x.shape[0], -1)), [F("a b c")], id="reshape-infer"),
    Spec("reshape", lambda x: x.reshape(2, -1), [F("2 a b")], id="reshape-method"),
    Spec("reshape", lambda x: np.ravel(x), [F("a b")], id="ravel"),
    Spec("reshape", lambda x: x.flatten(), [F("a b")], id="flatten"),
    Spec("reshape", lambda x: np.expand_dims(x, -1), [F("a b")], id="expand_dims"),
    Spec("reshape", lambda x: np.expand_dims(x, (0, 2)), [F("a b")], id="expand_dims-tuple"),
    Spec("reshape", lambda x: np.squeeze(x), [F("a 1 b 1")], sizes=(2, 4), id="squeeze"),
    Spec("reshape", lambda x: np.squeeze(x, axis=(1, -1)), [F("a 1 b 1")], id="squeeze-tuple"),
    Spec("reshape", lambda x: x.squeeze(-2), [F("a 1 b")], id="squeeze-method"),
    Spec("reshape", lambda x: np.atleast_1d(x), [F("")], id="atleast_1d"),
    Spec("reshape", lambda x: np.atleast_2d(x), [F("a")], id="atleast_2d"),
    Spec("reshape", lambda x, y: np.atleast_3d(x, y)[0] + np.atleast_3d(y), [F("a b"), F("b")],
         id="atleast_3d"),
    # transposes
    Spec("transpose", lambda x: np.transpose(x), [F("a b c")], id="transpose"),
    Spec("transpose", lambda x: np.transpose(x, (1, -1, 0)), [F("a b c")], id="transpose-axes"),
    Spec("transpose", lambda x: x.T, [F("a b")], id="transpose-T"),
    Spec("transpose", lambda x: np.swapaxes(x, 0, -1), [F("a b c")], id="swapaxes"),
    Spec("transpose", lambda x: np.moveaxis(x, 0, -1), [F("a b c")], id="moveaxis"),
    Spec("transpose", lambda x: np.moveaxis(x, (0, 1), (-1, 0)), [F("a b c")], id="moveaxis-tuple"),
    Spec(("transpose", "getitem"), lambda x: np.rot90(x), [F("a b")], id="rot90"),
    Spec(("transpose", "getitem"), lambda x: np.rot90(x, k=-1, axes=(2, 0)), [F("a b c")],
         id="rot90-axes"),
    Spec("getitem", lambda x: np.rot90(x, 2), [F("a b")], id="rot90-2"),
    # broadcasting
    Spec("broadcast_to", lambda x: np.broadcast_to(x, (3,) + x.shape), [F("a b")], id="broadcast_to"),
    Spec("broadcast_to", lambda x: np.broadcast_to(x, (2, 3)), [F("1 3")], id="broadcast_to-stretch"),
    Spec("broadcast_to", lambda x, y: np.broadcast_arrays(x, y)[0] * np.broadcast_arrays(x, y)[1],
         [F("a 1"), F("b")], id="broadcast_arrays"),
    # joining
    Spec("concatenate", lambda x, y: np.concatenate([x, y]), [F("a c"), F("b c")], id="concatenate"),
    Spec("concatenate", lambda x, y: np.concatenate((x, y), axis=-1), [F("a b"), F("a c")],
         id="concatenate-neg"),
    Spec("concatenate", lambda x, y: np.concatenate([x, y], axis=None), [F("a b"), F("c")],
         id="concatenate-none"),
    Spec("concatenate", lambda x, y: np.stack([x, y], axis=-1), [F("a b"), F("a b")], id="stack"),
    Spec("concatenate", lambda x, y: np.stack([x, y, x], axis=1), [F("a b"), F("a b")], id="stack-1"),
    Spec("concatenate", lambda x, y: np.hstack([x, y]), [F("a b"), F("a c")], id="hstack"),
    Spec("concatenate", lambda x, y: np.hstack((x, y)), [F("a"), F("b")], id="hstack-1d"),
    Spec("concatenate", lambda x, y: np.vstack([x, y]), [F("b"), F("a b")], id="vstack"),
    Spec("concatenate", lambda x, y: np.dstack([x, y]), [F("a b"), F("a b 2")], id="dstack"),
    Spec("concatenate", lambda x, y: np.column_stack([x, y]), [F("a"), F("a b")], id="column_stack"),
    # splitting
    Spec("getitem", lambda x: np.split(x, 2, axis=1)[1], [F("a 4")], id="split"),
    Spec("getitem", lambda x: np.split(x, [1, 3], axis=-1)[1] * 2, [F("a 5")], id="split-indices"),
    Spec("getitem", lambda x: np.array_split(x, 3)[0], [F("a b")], id="array_split"),
    Spec("getitem", lambda x: np.array_split(x, [2, 1, 5], axis=0)[1], [F("a b")], id="array_split-odd"),
    # repetition
    Spec("broadcast_to", lambda x: np.tile(x, 2), [F("a b")], id="tile"),
    Spec("broadcast_to", lambda x: np.tile(x, (2, 1, 3)), [F("a b")], id="tile-rank"),
    Spec("broadcast_to", lambda x: np.repeat(x, 2), [F("a b")], id="repeat-none"),
    Spec("broadcast_to", lambda x: np.repeat(x, 3, axis=-1), [F("a b")], id="repeat-axis"),
    Spec(("getitem", "broadcast_to", "concatenate"), lambda x: np.repeat(x, [1, 0, 3], axis=1),
         [F("a 3")], id="repeat-counts"),
    Spec("getitem", lambda x: np.repeat(x, [2, 1, 2], axis=0), [F("3 b")], id="repeat-counts-0"),
    # reversal and rotation of entries
    Spec("getitem", lambda x: np.flip(x), [F("a b")], id="flip"),
    Spec("getitem", lambda x: np.flip(x, -1), [F("a b c")], id="flip-neg"),
    Spec("getitem", lambda x: np.flip(x, (0, 2)), [F("a b c")], id="flip-tuple"),
    Spec("getitem", lambda x: np.fliplr(x), [F("a b")], id="fliplr"),
    Spec("getitem", lambda x: np.flipud(x), [F("a b")], id="flipud"),
    Spec("concatenate", lambda x: np.roll(x, 1), [F("a b")], id="roll-none"),
    Spec("concatenate", lambda x: np.roll(x, -2, axis=-1), [F("a b")], id="roll-neg"),
    Spec("concatenate", lambda x: np.roll(x, (1, 2), axis=(0, 2)), [F("a b c")], id="roll-tuple"),
    Spec("concatenate", lambda x: np.roll(x, 5, axis=0), [F("3 b")], id="roll-wrap"),
    # padding
    Spec("pad", lambda x: np.pad(x, 1), [F("a b")], id="pad"),
    Spec("pad", lambda x: np.pad(x, ((0, 2), (1, 0)), constant_values=1.5), [F("a b")], id="pad-value"),
    Spec("pad", lambda x: np.pad(x, ((1, 0), (2, 1)), constant_values=((1, 2), (3, 4))),
         [F("a b")], id="pad-values"),
    Spec(("getitem", "broadcast_to"), lambda x: np.pad(x, 2, mode="edge"), [F("a b")], id="pad-edge"),
    Spec("getitem", lambda x: np.pad(x, ((1, 2), (0, 1)), mode="reflect"), [F("a b")], sizes=(2, 4),
         id="pad-reflect"),
    Spec("getitem", lambda x: np.pad(x, (3, 4), mode="reflect"), [F("a")], sizes=(2, 4),
         id="pad-reflect-wide"),
    Spec("getitem", lambda x: np.pad(x, (2, 1), mode="symmetric"), [F("a b")], id="pad-symmetric"),
    Spec("getitem", lambda x: np.pad(x, ((1, 1), (2, 5)), mode="wrap"), [F("a b")], id="pad-wrap"),
]
