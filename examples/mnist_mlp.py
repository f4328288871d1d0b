"""MNIST with a multi-layer perceptron: Flatten, Dense(784 => 256, relu), Dense(256 => 10).

    python examples/mnist_mlp.py --data path/to/mnist   # the four IDX files, gzipped or not
    python examples/mnist_mlp.py --fake                 # generated digits, no download

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
    return nn.Chain(nn.Flatten(),
                    nn.Dense(784, 256, nn.relu, rng=seed),
                    nn.Dense(256, 10, rng=seed + 1))


if __name__ == "__main__":
    sys.exit(_mnist.main(__doc__, build_model, lr=1e-3))
