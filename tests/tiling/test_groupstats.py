"""Merged per-tile GroupNorm moments equal the whole's, in any split, order fixed by the caller."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling.groupstats import group_moments, mean_and_variance, merge, weighted


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    offset=st.floats(-1e4, 1e4),
    seed=st.integers(0, 2**31),
)
def test_merged_moments_equal_the_whole(cuts, offset, seed):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((3, sum(cuts))) * 3 + offset).astype(np.float32)
    edges = np.cumsum([0, *cuts])
    parts = [group_moments(values[:, a:b]) for a, b in zip(edges, edges[1:])]
    mean, var = mean_and_variance(merge(parts))
    whole = values.astype(np.float64)
    np.testing.assert_allclose(mean, whole.mean(axis=1), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(var, whole.var(axis=1), rtol=1e-9, atol=1e-9)


def test_torch_tensors_give_the_numpy_moments():
    values = torch.randn(4, 50)
    np.testing.assert_allclose(group_moments(values), group_moments(values.numpy()), rtol=1e-12)


def test_a_large_offset_does_not_cancel_the_variance():
    # sum-of-squares minus squared sum loses every digit here; Chan's update keeps them
    values = np.full((1, 1000), 1e8) + np.arange(1000) % 2
    parts = [group_moments(values[:, i : i + 100]) for i in range(0, 1000, 100)]
    assert abs(mean_and_variance(merge(parts))[1][0] - 0.25) < 1e-9


@given(weight=st.integers(1, 5), seed=st.integers(0, 100))
def test_a_weighted_part_counts_as_that_many_copies_of_itself(weight, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((3, 40)) * 3 + 1, rng.standard_normal((3, 25))
    copies = merge([group_moments(a), *[group_moments(b)] * weight])
    np.testing.assert_allclose(merge([group_moments(a), weighted(group_moments(b), weight)]), copies, rtol=1e-9)
