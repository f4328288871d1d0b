"""Model surgery: cast with ``fmap``, tie weights, swap a layer with ``tree.at``, freeze layers.

    python examples/surgery.py

Models are immutable pytrees, so surgery builds a new model and leaves the old
one as it was; a model prints with its parameter count, which the script shows
before and after each step:

1. ``ff.fmap`` casts every float64 array of a model to float32 (half the memory).
2. Tied weights: a small next-token model whose output layer uses the
   embedding matrix ``E`` as its weight (``h @ E.T``) -- the same array object
   in two places. It is counted once, ``optim.setup`` gives it one slot (the
   two gradients are summed), and it stays one object through ``fmap`` and
   training.
3. ``ff.tree.at`` swaps the 2-class head of a trained classifier for a new
   3-class head; ``optim.freeze`` keeps the two hidden layers as they are
   while the new head trains on a 3-class task (fine-tuning on features).
"""
import argparse
import sys

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def ce(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def fit(model, x, y, steps, lr=1e-2, freeze=None, seed=0):
    state = optim.setup(optim.adam(lr), model)
    if freeze is not None:
        state = optim.freeze(state, freeze)
    loader = data.DataLoader((x, y), batchsize=64, shuffle=True, rng=seed)
    done = 0
    while done < steps:
        for xb, yb in loader:
            state, model = optim.step(state, model, ff.grad(ce)(model, xb, yb))
            done += 1
            if done == steps:
                break
    return model, state


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x), axis=-1) == y))


def cast(model, dtype):
    """Every floating array of ``model`` as ``dtype``; other leaves (integers) unchanged."""
    return ff.fmap(lambda a: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a,
                   model)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per stage")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)

    print("1. Cast float64 -> float32 with fmap")
    m64 = nn.Chain(nn.Dense(2, 32, nn.relu, dtype=np.float64, rng=1),
                   nn.Dense(32, 2, dtype=np.float64, rng=2))
    m32 = cast(m64, np.float32)
    print("   before:", m64)
    print("   after: ", m32)
    print("   dtypes:", sorted({str(a.dtype) for a in ff.tree.leaves(m32)}))

    print("\n2. Tie the embedding and the output weight")
    vocab, dim = 20, 16
    emb = nn.Embedding(vocab, dim, rng=3, dtype=np.float64)
    untied = nn.Chain(embed=emb, mix=nn.Dense(dim, dim, np.tanh, rng=4, dtype=np.float64),
                      out=nn.Dense(dim, vocab, bias=False, rng=5, dtype=np.float64))
    # Dense keeps its weight as (out, in) = (vocab, dim): the embedding's shape. The output
    # layer computes h @ E.T with the very array the embedding looks rows up in.
    tied = ff.tree.at(lambda m: m.out, untied, replace=nn.Dense.from_arrays(emb.weight))
    tied = cast(tied, np.float32)   # fmap maps a shared array once: it stays shared
    print("   untied:", untied)
    print("   tied:  ", tied)
    print("   embed.weight is out.weight:", tied.embed.weight is tied.out.weight)
    tokens = rng.integers(0, vocab, 2000)
    targets = (tokens + 1) % vocab                 # task: predict the next token id
    before = ce(tied, tokens, targets)
    tied, state = fit(tied, tokens, targets, args.steps)
    print(f"   trained {args.steps} steps: loss {float(before):.3f} -> "
          f"{float(ce(tied, tokens, targets)):.3f}, accuracy {accuracy(tied, tokens, targets):.1%}")
    print("   optimiser:", state)
    print("   still tied after training:", tied.embed.weight is tied.out.weight)

    print("\n3. Swap the head with tree.at, freeze the first layers")
    x2, y2 = data.make_moons(1000, noise=0.1, rng=5)
    base = nn.Chain(nn.Dense(2, 32, nn.relu, rng=6), nn.Dense(32, 32, nn.relu, rng=7),
                    nn.Dense(32, 2, rng=8))
    base, _ = fit(base, x2, y2, args.steps)
    print(f"   trained on two moons (2 classes): accuracy {accuracy(base, x2, y2):.1%}")
    print("   before:", base)
    # A new task with 3 classes: the first moon split at x = 0 into two classes.
    y3 = np.where((y2 == 0) & (x2[:, 0] < 0), 2, y2)
    model = ff.tree.at(lambda m: m.layers[2], base, replace=nn.Dense(32, 3, rng=9))
    print("   after: ", model)
    model, state = fit(model, x2, y3, args.steps, freeze=lambda m: (m.layers[0], m.layers[1]))
    print("   optimiser:", state)
    print(f"   fine-tuned on 3 classes: accuracy {accuracy(model, x2, y3):.1%}")
    frozen = all(model.layers[i].weight is base.layers[i].weight for i in (0, 1))
    print("   layers 0 and 1 unchanged (the same arrays):", frozen)
    ok = (tied.embed.weight is tied.out.weight and frozen
          and m32.layers[0].weight.dtype == np.float32)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
