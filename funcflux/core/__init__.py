"""The engine: trace levels, tracers, ``bind`` and the ``Primitive`` type.

Users never import from here; ``funcflux.ops`` declares primitives with it and
``funcflux.transforms`` builds interpreters on it.
"""
