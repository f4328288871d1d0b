"""Transitional: declares the fused layer primitives (funcflux.ops.nn)."""
from ..ops import nn as _nn  # noqa: F401
