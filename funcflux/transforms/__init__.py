"""The transforms, one interpreter per file: reverse (vjp, grad), forward (jvp),
batching (vmap) and the derived Jacobians; ``edge`` handles pytrees at the API edge."""
