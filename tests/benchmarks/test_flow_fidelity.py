"""The statistics the fidelity benchmark reports."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.flow_fidelity import frechet_distance, residual_statistics


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1 / 255, (20000, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # N(0, s1^2 I) vs N(m, s2^2 I) in d dims: |m|^2 + d (s1 - s2)^2 (units of 1/255).
    b = rng.normal(0.5 / 255, 3 / 255, (20000, 4))
    assert frechet_distance(a, b) == pytest.approx(4 * 0.25 + 4 * (1 - 3) ** 2, rel=0.05)
    zeros = np.zeros((100, 4))  # a singular covariance is fine
    assert frechet_distance(zeros, b) == pytest.approx(4 * 0.25 + 4 * 9, rel=0.05)


def test_residual_statistics_on_constructed_fields():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 0.1, (64, 64, 1))
    correlated = np.repeat(white, 3, axis=2) + rng.normal(0, 0.1, (64, 64, 3))  # channel corr 0.5
    stats = residual_statistics([correlated])
    assert stats["cross_channel_corr"] == pytest.approx(0.5, abs=0.05)
    assert abs(stats["lag1_autocorr"]) < 0.05
    smooth = (correlated[1:] + correlated[:-1])[:, 1:] + (correlated[1:] + correlated[:-1])[:, :-1]
    assert residual_statistics([smooth])["lag1_autocorr"] > 0.4
    assert residual_statistics([np.zeros((8, 8, 3))])["std"] == [0.0, 0.0, 0.0]
