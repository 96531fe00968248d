"""The note's seven lines under jax.jit: XLA compiles the whole step into one program.

What an engineer who already uses JAX would write. Set-up copies the inputs into XLA's own
buffers (row-major, whatever X's layout) and compiles for the shape; the timed step calls the
compiled program and waits for its result (JAX dispatches asynchronously). float64 is
enabled only inside set-up and the step (jax.enable_x64 as a context manager), never for
the process, and the answer's dtype is checked: outside that scope JAX silently computes
float64 inputs in float32. XLA's CPU thread pool sizes itself from the affinity mask when
it starts, so rows are timed in a worker process pinned to the requested cores.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

import numpy as np

from implementations.interface import (
    FloatArray,
    Gradients,
    Implementation,
    Prepared,
    propagate_via,
    summary_of,
)

REQUIREMENTS = ("jax", "jaxlib")


@cache
def _compiled() -> Callable[..., Any]:
    """The jitted step, built on first use so that `import implementations` never imports JAX."""
    import jax
    import jax.numpy as jnp

    def step(w: Any, b: Any, X: Any, Y: Any) -> tuple[Any, Any, Any]:
        m = X.shape[1]
        Z = w.T @ X + b
        # implementations.logistic's stable forms: only exp(-|z|) is ever taken.
        e = jnp.exp(-jnp.abs(Z))
        A = jnp.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        loss = jnp.maximum(Z * (1.0 - 2.0 * Y), 0.0) + jnp.log1p(e)
        dZ = A - Y
        return X @ dZ.T / m, jnp.sum(dZ) / m, jnp.sum(loss) / m

    compiled: Callable[..., Any] = jax.jit(step)  # typed here whether or not JAX is installed
    return compiled


def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
    """Copy the inputs to XLA (untimed); the step runs the compiled program and blocks on it."""
    import jax

    fn = _compiled()
    wait: Callable[[object], object] = jax.block_until_ready
    dtype, n_x = X.dtype, X.shape[0]
    with jax.enable_x64(True):
        args = tuple(jax.device_put(a) for a in (w, np.asarray(b, dtype=dtype), X, Y))

    def step() -> object:
        # The scope costs ~2 µs a call here; without it the cached float64 program is not used.
        with jax.enable_x64(True):
            return wait(fn(*args))

    def gradients(result: object) -> Gradients:
        dw, db, cost = (np.asarray(r) for r in cast(tuple[Any, Any, Any], result))
        if dw.dtype != dtype:
            raise TypeError(f"jax_jit computed in {dw.dtype}, not {dtype}: float64 was not enabled")
        return Gradients(dw=dw.reshape(n_x, 1), db=float(db), cost=float(cost))

    return Prepared(step=step, gradients=gradients)


IMPLEMENTATION = Implementation(
    name="jax_jit",
    propagate=propagate_via(setup),
    summary=summary_of(__doc__),
    threading="xla",
    jit=True,
    setup_fn=setup,
    requirements=REQUIREMENTS,
    isolate=True,
    role="peer",
    layout_note="set-up copies X to XLA (device_put), in its own row-major layout, so the step never sees F order",
    temporaries="examples",
)
