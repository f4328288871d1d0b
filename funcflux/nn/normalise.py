"""normalise (being written)."""
__all__: list[str] = []
