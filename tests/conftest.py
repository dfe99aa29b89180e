"""Test-session settings: float64 everywhere, so tests can compare with closed forms at 1e-6."""

import jax

# Enabled once for the whole session: JAX's x64 flag is global, and a module that
# enabled it on import would change the dtype of every later module's arrays.
jax.config.update("jax_enable_x64", True)
