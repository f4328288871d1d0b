"""Spec lines for the FFT family (funcflux/ops/fft.py).

Every NumPy transform appears with real (``F``) and complex (``C``) input, each
``norm``, ``n``/``s`` smaller and larger than the axis (cropping and zero-padding),
odd and even lengths for the real transforms, and a transformed axis that is not
the last (so the sweep's random batch axes land before and after it). Complex
outputs are checked as they are; ``_power`` lines check a real-valued spectral
quantity, ``Re(z conj(z))``, as a loss would use it. The lengths that decide
``rfft``/``irfft``'s Hermitian halving are fixed digits, the others letters.
"""
from __future__ import annotations

import numpy as np

from tests.ops.specs import C, F, Spec

P = "fft"
CROP = ("fft", "getitem")
PAD = ("fft", "pad")
ROLL = ("getitem", "concatenate")


def _power(z):
    """``|z|**2`` written smoothly (``abs`` has a kink at 0)."""
    return np.real(z * np.conj(z))


SPECS = [
    # fft / ifft
    Spec(P, lambda x: np.fft.fft(x), [F("a b")], id="fft-real"),
    Spec(P, lambda x: np.fft.fft(x), [C("a b")], id="fft-complex"),
    Spec(P, lambda x: _power(np.fft.fft(x, axis=0)), [F("a b")], id="fft-power-axis0"),
    Spec(CROP, lambda x: np.fft.fft(x, n=3, norm="ortho"), [C("a 5")], id="fft-crop-ortho"),
    Spec(PAD, lambda x: np.fft.fft(x, 7, 1, "forward"), [F("a 4 b")], id="fft-pad-forward"),
    Spec(P, lambda x: np.fft.ifft(x), [C("a b")], id="ifft-complex"),
    Spec(P, lambda x: np.fft.ifft(x, axis=0, norm="ortho"), [F("a b")], id="ifft-real-ortho"),
    Spec(PAD, lambda x: np.fft.ifft(x, n=6, norm="forward"), [C("b 3")], id="ifft-pad-forward"),
    Spec(CROP, lambda x: np.real(np.fft.ifft(x, n=2, axis=0)), [C("4 b")], id="ifft-crop-real"),
    # rfft: odd and even n, cropped and padded
    Spec(P, lambda x: np.fft.rfft(x), [F("a 6")], id="rfft-even"),
    Spec(P, lambda x: np.fft.rfft(x), [F("a 5")], id="rfft-odd"),
    Spec(P, lambda x: np.fft.rfft(x, norm="ortho"), [F("a 1")], id="rfft-1"),
    Spec(P, lambda x: _power(np.fft.rfft(x, axis=0, norm="ortho")), [F("4 b")],
         id="rfft-power-axis0"),
    Spec(CROP, lambda x: np.fft.rfft(x, n=3, norm="forward"), [F("a 5")], id="rfft-crop-odd"),
    Spec(PAD, lambda x: np.fft.rfft(x, n=8), [F("a 5")], id="rfft-pad-even"),
    # irfft: the Hermitian half-spectrum, odd and even n, cropped and padded, real input
    Spec(P, lambda c: np.fft.irfft(c), [C("a 3")], id="irfft-even"),
    Spec(P, lambda c: np.fft.irfft(c, n=5), [C("a 3")], id="irfft-odd"),
    Spec(P, lambda c: np.fft.irfft(c, n=1, norm="ortho"), [C("a 1")], id="irfft-1"),
    Spec(P, lambda c: np.fft.irfft(c, norm="ortho"), [C("a 2")], id="irfft-2-ortho"),
    Spec(PAD, lambda c: np.fft.irfft(c, n=7, norm="forward"), [C("a 3")], id="irfft-pad-odd"),
    Spec(CROP, lambda c: np.fft.irfft(c, n=4, axis=0), [C("5 b")], id="irfft-crop-axis0"),
    Spec(P, lambda c: np.fft.irfft(c, 6), [F("a 4")], id="irfft-real-input"),
    # two-dimensional
    Spec(P, lambda x: np.fft.fft2(x), [F("a b c")], id="fft2-real"),
    Spec(PAD + CROP, lambda x: np.fft.fft2(x, s=(2, 5), norm="ortho"), [C("a 3 b")],
         id="fft2-s-complex"),
    Spec(P, lambda x: np.fft.ifft2(x, axes=(0, 2), norm="forward"), [C("a b c")],
         id="ifft2-axes"),
    Spec(P, lambda x: np.fft.rfft2(x), [F("a b 4")], id="rfft2"),
    Spec(PAD + CROP, lambda x: _power(np.fft.rfft2(x, s=(5, 3), axes=(1, 0))), [F("a 4")],
         id="rfft2-s-axes"),
    Spec(P, lambda c: np.fft.irfft2(c), [C("a b 3")], id="irfft2"),
    Spec(PAD + CROP, lambda c: np.fft.irfft2(c, s=(3, 5), norm="ortho"), [C("a 4 2")],
         id="irfft2-s"),
    # n-dimensional
    Spec(P, lambda x: np.fft.fftn(x), [C("a b c")], id="fftn"),
    Spec(PAD, lambda x: np.fft.fftn(x, s=(4, 3), axes=(0, 2), norm="forward"), [F("a b 2")],
         id="fftn-s-axes"),
    Spec(P, lambda x: np.fft.ifftn(x, norm="ortho"), [F("a b")], id="ifftn-real"),
    Spec(P, lambda x: np.fft.ifftn(x, axes=(-1,)), [C("a b c")], id="ifftn-complex"),
    Spec(P, lambda x: np.fft.rfftn(x), [F("a b 5")], id="rfftn"),
    Spec(PAD + CROP, lambda x: np.fft.rfftn(x, s=(2, 4), axes=(2, 0), norm="ortho"), [F("3 b 4")],
         id="rfftn-s-axes"),
    Spec(P, lambda c: np.fft.irfftn(c), [C("a b 3")], id="irfftn"),
    Spec(PAD, lambda c: np.fft.irfftn(c, s=(3, 5), axes=(0, 1), norm="forward"), [C("a 2 b")],
         id="irfftn-s-axes"),
    # composed with each other: gradients through a round trip
    Spec(P, lambda x: np.fft.irfft(np.fft.rfft(x) * np.conj(np.fft.rfft(x)), 5), [F("a 5")],
         id="autocorrelation"),
    Spec(P, lambda x, y: np.fft.irfftn(np.fft.rfftn(x) * np.fft.rfftn(y), x.shape, (0, 1)),
         [F("3 4"), F("3 4")], id="circular-convolution"),
    # shifts
    Spec(ROLL, lambda x: np.fft.fftshift(x), [F("a b")], id="fftshift"),
    Spec(ROLL, lambda x: np.fft.fftshift(x, axes=1), [C("a b")], id="fftshift-axis"),
    Spec(ROLL, lambda x: np.fft.ifftshift(x, axes=(0, -1)), [F("a b c")], id="ifftshift"),
    Spec(ROLL, lambda x: np.fft.ifftshift(np.fft.fftshift(x)), [C("a b")], id="shift-round-trip"),
]
