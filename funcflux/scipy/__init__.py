"""``funcflux.scipy``: differentiable versions of SciPy functions, without needing SciPy.

- ``funcflux.scipy.special``: special functions (``erf``, ``gammaln``, ``digamma``...);
  SciPy's own ufuncs route to them inside transforms when SciPy is installed (SciPy's
  ``logsumexp``, ``polygamma`` and ``multigammaln`` are not ufuncs: call funcflux's); without SciPy, the
  functions NumPy suffices for still work.
- ``funcflux.scipy.linalg``: ``expm`` and friends.

``import funcflux`` never imports SciPy; these modules import it lazily, if at all.
"""
