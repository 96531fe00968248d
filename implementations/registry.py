"""The registry: every implementation by name, from the slowest expected to the fastest, then the peers.

Adding an implementation is one module with an IMPLEMENTATION and one line below;
tests, benchmarks, plots and the report then pick it up with no other edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from implementations import (
    feature_vectorized,
    fully_vectorized,
    jax_jit,
    numba_fused,
    numba_loop,
    numba_parallel,
    torch_eager,
    two_loop,
    two_loop_lists,
)
from implementations.interface import Implementation

_ORDERED: tuple[Implementation, ...] = (
    two_loop.IMPLEMENTATION,
    two_loop_lists.IMPLEMENTATION,
    feature_vectorized.IMPLEMENTATION,
    fully_vectorized.IMPLEMENTATION,
    numba_loop.IMPLEMENTATION,
    numba_fused.IMPLEMENTATION,
    numba_parallel.IMPLEMENTATION,
    # Peers (pip install -e '.[peers]'): what an engineer might use instead; unavailable without the extra.
    jax_jit.IMPLEMENTATION,
    torch_eager.IMPLEMENTATION,
)

_BY_NAME: dict[str, Implementation] = {impl.name: impl for impl in _ORDERED}
# Read-only for users; a test may add to _BY_NAME, and every reader of REGISTRY sees it.
REGISTRY: MappingProxyType[str, Implementation] = MappingProxyType(_BY_NAME)
REFERENCE = "fully_vectorized"
BASELINE = "two_loop"


def with_goals(names: Iterable[str] | None = None) -> list[Implementation]:
    """The registered kernels with a goal against REFERENCE, in registry order (among `names`, if given)."""
    among = None if names is None else set(names)
    return [impl for name, impl in REGISTRY.items() if impl.goal is not None and (among is None or name in among)]
