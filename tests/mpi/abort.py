"""Worker for ``mpiexec -n 2``: rank 1 raises while rank 0 waits in a collective.

Without the abort hook rank 0 would wait forever; with it the job ends at once,
printing rank 1's traceback. Run by tests/test_distributed.py.
"""
import time

import numpy as np


def main():
    from funcflux import distributed as dist

    if dist.rank() == 1:
        raise RuntimeError("rank one fails on purpose")
    dist.allreduce(np.ones(3))  # rank 1 never comes: only an abort ends this
    time.sleep(60)
    print("rank 0 was not stopped", flush=True)


if __name__ == "__main__":
    main()
