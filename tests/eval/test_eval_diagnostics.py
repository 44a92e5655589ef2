import numpy as np
import pytest

from modalign.eval.diagnostics import coupling_quality


def test_identity_coupling_of_aligned_rows_is_perfect():
    labels = np.array([0, 0, 1, 2, 2, 2])
    q = coupling_quality(np.eye(6) / 6, labels, labels, np.arange(6), np.arange(6))
    assert q["same_class"] == pytest.approx(1.0)
    assert q["true_pairs"] == pytest.approx(1.0)
    # Chance: sum over classes of the squared class shares, (2/6)^2 + (1/6)^2 + (3/6)^2.
    assert q["chance"] == pytest.approx((4 + 1 + 9) / 36)


def test_independent_coupling_sits_at_chance():
    rng = np.random.default_rng(0)
    la, lb = rng.integers(0, 3, 40), rng.integers(0, 3, 30)
    plan = np.outer(np.full(40, 1 / 40), np.full(30, 1 / 30))
    q = coupling_quality(plan, la, lb)
    assert q["same_class"] == pytest.approx(q["chance"])
    assert "true_pairs" not in q


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        coupling_quality(np.ones((3, 4)), np.zeros(3), np.zeros(5))
