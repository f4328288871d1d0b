"""MNIST with a small LeNet-style CNN: two Conv + MaxPool blocks, then one Dense layer.

    python examples/mnist_cnn.py --data path/to/mnist   # the four IDX files, gzipped or not
    python examples/mnist_cnn.py --fake                 # generated digits, no download

Trains with Adam on mini-batches through ``ff.train`` and prints the accuracy
on the training and test sets every 2 epochs (the loop, data and flags live in
``examples/_mnist.py``, shared with the other MNIST example; the model is here). ``--fake`` uses digit-like
images drawn by ``examples/_fake_digits.py`` (deterministic; a check that the
code trains, not a measure of the model). Without ``--fake``, a missing data
folder is an error (exit status 2) that says where to get the files.
"""
import sys

from funcflux import nn

import _mnist


def build_model(seed: int) -> nn.Chain:
    # Images are NCHW: (N, 1, 28, 28) -> (N, 8, 26, 26) -> (N, 8, 13, 13)
    #                  -> (N, 16, 11, 11) -> (N, 16, 5, 5) -> 400 features -> 10 logits.
    return nn.Chain(nn.Conv((3, 3), 1, 8, nn.relu, rng=seed), nn.MaxPool(2),
                    nn.Conv((3, 3), 8, 16, nn.relu, rng=seed + 1), nn.MaxPool(2),
                    nn.Flatten(),
                    nn.Dense(400, 10, rng=seed + 2))


def add_channel(x):
    return x[:, None]  # (N, 28, 28) -> (N, 1, 28, 28)


if __name__ == "__main__":
    sys.exit(_mnist.main(__doc__, build_model, lr=3e-3, prepare=add_channel))
