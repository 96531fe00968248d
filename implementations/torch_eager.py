"""The note's seven lines in PyTorch, eager mode on CPU tensors that share the NumPy arrays' memory.

What an engineer who already uses PyTorch would write. Set-up wraps the arrays with
torch.from_numpy (no copy, X's strides kept); the step runs one operator after another, as
fully_vectorized does, through PyTorch's own kernels and BLAS. Its intra-op thread pool is set
per row with torch.set_num_threads and restored afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

from implementations.interface import (
    FloatArray,
    Gradients,
    Implementation,
    Prepared,
    propagate_via,
    summary_of,
)

REQUIREMENTS = ("torch",)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op pool at `threads` inside the block, restored after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def step(torch: Any, w: Any, b: float, X: Any, Y: Any) -> tuple[Any, Any, Any]:
    """One forward and backward pass on tensors; nothing requires grad, so no graph is recorded.

    torch comes in as an argument: an import inside the timed step would cost a lookup per call.
    """
    m = X.shape[1]
    Z = w.T @ X + b
    # implementations.logistic's stable forms: only exp(-|z|) is ever taken.
    e = torch.exp(-Z.abs())
    A = torch.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    loss = torch.clamp(Z * (1.0 - 2.0 * Y), min=0.0) + torch.log1p(e)
    dZ = A - Y
    return X @ dZ.T / m, dZ.sum() / m, loss.sum() / m


@cache
def _first_step(dtype: str) -> None:
    """One step on 2 x 2 tensors: the first use of each operator and dtype in a process costs ~1 ms.

    Otherwise the timing's warm-up call carries that cost, and the loops per round are
    calibrated from a call up to 20x slower than the rest.
    """
    import torch

    x = torch.ones((2, 2), dtype=getattr(torch, dtype))
    step(torch, x[:, :1], 0.0, x, x[:1])


def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
    """Wrap the arrays as tensors (untimed, no copy); the step computes on them."""
    import torch

    _first_step(str(X.dtype))
    with warnings.catch_warnings():
        # Read-only arrays are wrapped too: the step never writes to its inputs.
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        wt, Xt, Yt = (torch.from_numpy(a) for a in (w, X, Y))
    b_float, dtype, n_x = float(b), X.dtype, X.shape[0]

    def gradients(result: object) -> Gradients:
        dw, db, cost = cast(tuple[Any, Any, Any], result)
        dw_array = dw.numpy()
        if dw_array.dtype != dtype:
            raise TypeError(f"torch_eager computed in {dw_array.dtype}, not {dtype}")
        return Gradients(dw=dw_array.reshape(n_x, 1), db=float(db.item()), cost=float(cost.item()))

    return Prepared(step=lambda: step(torch, wt, b_float, Xt, Yt), gradients=gradients)


IMPLEMENTATION = Implementation(
    name="torch_eager",
    propagate=propagate_via(setup),
    summary=summary_of(__doc__),
    threading="torch",
    setup_fn=setup,
    requirements=REQUIREMENTS,
    thread_hook=torch_threads,
    role="peer",
    reads_of_x=2,  # two matrix products, one operator after the other
    layout_note="X keeps its strides (torch.from_numpy) and its matrix products go to BLAS, which takes both orders",
    temporaries="examples",
)
