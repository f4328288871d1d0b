"""An ensemble of 16 models trained at once: ``vmap`` over stacked parameters.

    python examples/ensemble.py

``ff.tree.stack`` turns 16 models of the same shape into ONE model whose
arrays have a leading axis of 16 (a Dense weight of shape (16, out, in)).
``ff.vmap(..., in_axes=(0, None, None))`` maps over that axis of the model
and shares the batch, so one call computes 16 forward passes, 16 losses and
16 gradients with batched matrix products instead of a Python loop. The
optimiser runs on the stacked model unchanged: Adam's update is elementwise,
so one Adam over the stack is 16 independent Adams. The script checks that
model 3 of the ensemble ends exactly where training it alone ends, prints each
model's loss and accuracy, and compares the ensemble's averaged prediction with
its members.
"""
import argparse
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def build_model(seed: int) -> nn.Chain:
    return nn.Chain(nn.Dense(2, 16, nn.tanh, rng=seed), nn.Dense(16, 16, nn.tanh, rng=seed + 1000),
                    nn.Dense(16, 2, rng=seed + 2000))


def loss(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def train(model, loader, epochs, lr, batched):
    """Adam on one model, or on a stacked ensemble (``batched=True``) through vmap."""
    grad = ff.grad(loss)
    if batched:
        grad = ff.vmap(grad, in_axes=(0, None, None))   # one gradient per model
    state = optim.setup(optim.adam(lr), model)
    for _ in range(epochs):
        for x, y in loader:
            state, model = optim.step(state, model, grad(model, x, y))
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    x_train, y_train = data.make_moons(400, noise=0.3, rng=args.seed)
    x_test, y_test = data.make_moons(2000, noise=0.3, rng=args.seed + 1)
    loader = data.DataLoader((x_train, y_train), batchsize=50, shuffle=True, rng=args.seed)

    members = [build_model(args.seed + 10 * i) for i in range(args.models)]
    ensemble = ff.tree.stack(members)
    print(f"{args.models} models stacked into one:", ensemble)
    print("first layer's weight:", ensemble.layers[0].weight.shape)

    t0 = time.perf_counter()
    ensemble = train(ensemble, loader, args.epochs, args.lr, batched=True)
    t_ensemble = time.perf_counter() - t0

    k = min(3, args.models - 1)
    loader = data.DataLoader((x_train, y_train), batchsize=50, shuffle=True, rng=args.seed)
    t0 = time.perf_counter()
    alone = train(members[k], loader, args.epochs, args.lr, batched=False)
    t_one = time.perf_counter() - t0
    member_k = ff.tree.unstack(ensemble)[k]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ff.tree.leaves(member_k),
                                                            ff.tree.leaves(alone)))
    print(f"model {k} trained in the ensemble vs alone: max difference {diff:.1e}")
    print(f"time: {t_ensemble:.2f} s for all {args.models} models at once, {t_one:.2f} s for one "
          f"alone ({args.models * t_one / t_ensemble:.1f}x faster than {args.models} runs)")

    test_losses = ff.vmap(loss, in_axes=(0, None, None))(ensemble, x_test, y_test)
    logits = ff.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, x_test)  # (models, N, 2)
    accs = np.mean(np.argmax(logits, axis=-1) == y_test, axis=1)
    print("model  test loss  test accuracy")
    for i, (l, a) in enumerate(zip(test_losses, accs)):
        print(f"{i:5d}  {float(l):9.4f}  {a:13.1%}")
    probs = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    ens_acc = float(np.mean(np.argmax(probs.mean(axis=0), axis=-1) == y_test))
    print(f"members' accuracy {accs.min():.1%} to {accs.max():.1%}; "
          f"ensemble (mean probability) {ens_acc:.1%}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
