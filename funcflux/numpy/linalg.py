"""Transitional: ``fnp.linalg`` (being split out of ``funcflux.ops.linalg``)."""
from ..ops.linalg import namespace as _ns

globals().update({k: v for k, v in vars(_ns).items() if not k.startswith("__")})
