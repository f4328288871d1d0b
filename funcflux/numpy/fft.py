"""Transitional: ``fnp.fft`` (being split out of ``funcflux.ops.fft``)."""
from ..ops.fft import namespace as _ns

globals().update({k: v for k, v in vars(_ns).items() if not k.startswith("__")})
