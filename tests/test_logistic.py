"""The vectorisable sigmoid and loss (polynomial exp and log1p) against 50-digit mpmath, over the whole range."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from implementations import numba_fused
from implementations.logistic import sigmoid_and_loss_block

mpmath.mp.dps = 50
ULP = 2.0**-52
TINY = 2.2250738585072014e-308  # the smallest normal float64

# Zero, tiny, around every decade, where exp(-|z|) leaves the normal range (708.4) and underflows (745.1).
Z = np.array([0.0, 1e-300, 1e-12, 0.3, 0.5 * math.log(2), 1.0, 2.5, 10.0, 36.7, 100.0, 500.0])
Z = np.concatenate([Z, [708.3, 708.5, 720.0, 744.9, 745.2, 1e3]])


def _truth(z: float, y: float) -> tuple[float, float]:
    zm = mpmath.mpf(z)
    a = 1 / (1 + mpmath.exp(-zm))
    # -log(a) for y = 1 and -log(1 - a) for y = 0, as log(1 + exp(-z)) and log(1 + exp(z)): exact in mpmath.
    loss = mpmath.log1p(mpmath.exp(-zm if y == 1.0 else zm))
    return float(a), float(loss)


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "numba"])
def test_each_example_is_within_a_few_ulps_of_mpmath(compiled: bool) -> None:
    block = numba_fused.block_sigmoid_and_loss if compiled else sigmoid_and_loss_block
    rng = np.random.default_rng(3)
    zs = np.concatenate([Z, -Z, rng.uniform(-800, 800, 300), rng.normal(0, 3, 300)])
    for z in zs:
        for y in (0.0, 1.0):
            dz = np.array([z])
            _, loss = block(dz, np.array([y]))
            a_true, loss_true = _truth(float(z), y)
            if y == 1.0:  # dz = a - 1: the subtraction's own rounding, absolute, as in the scalar form
                assert abs(dz[0] - (a_true - 1.0)) <= 4 * ULP, (z, y)
            elif a_true >= TINY:  # dz = a
                assert abs(dz[0] - a_true) <= 4 * ULP * a_true, (z, y)
            else:  # subnormal or zero: within a few of the smallest steps
                assert abs(dz[0] - a_true) <= 4 * 2.0**-1074, (z, y)
            assert abs(loss - loss_true) <= 4 * ULP * max(loss_true, TINY), (z, y, loss, loss_true)


def test_the_block_sums_match_the_scalar_form_one_example_at_a_time() -> None:
    from implementations.logistic import sigmoid_and_loss

    rng = np.random.default_rng(4)
    z = rng.normal(0, 20, 1_000)
    y = (rng.random(1_000) > 0.5).astype(float)
    dz = z.copy()
    db, cost = numba_fused.block_sigmoid_and_loss(dz, y)
    pairs = [sigmoid_and_loss(float(zi), float(yi)) for zi, yi in zip(z, y, strict=True)]
    np.testing.assert_allclose(dz, [a - yi for (a, _), yi in zip(pairs, y, strict=True)], rtol=1e-14, atol=1e-300)
    assert db == pytest.approx(sum(a - yi for (a, _), yi in zip(pairs, y, strict=True)), rel=1e-12)
    assert cost == pytest.approx(math.fsum(loss for _, loss in pairs), rel=1e-13)
