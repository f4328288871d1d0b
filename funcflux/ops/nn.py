"""Fused primitives for neural networks, kept for numerical stability and speed."""
from __future__ import annotations

__all__: list[str] = []
