"""make_spirals follows the Neural ODE paper's construction (section 5.1, published example)."""

from __future__ import annotations

import numpy as np
import pytest

from latentode.datasets import make_spirals
from latentode.datasets.spirals import spiral_paths


def test_shapes_grid_and_determinism() -> None:
    a = make_spirals(20, n_points=100, n_observed=30, random_state=3)
    b = make_spirals(20, n_points=100, n_observed=30, random_state=3)
    assert a.observed.equals(b.observed) and a.future.equals(b.future)
    assert list(a.observed.columns) == ["id", "t", "x", "y"]
    assert a.observed.groupby("id").size().eq(30).all()
    assert a.future.groupby("id").size().eq(100).all()
    step = 6 * np.pi / 999
    # observed times: distinct points of the 100-step window starting at 0
    k = a.observed["t"].to_numpy() / step
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert k.min() >= 0 and k.max() <= 99
    assert a.observed.groupby("id")["t"].apply(lambda s: s.is_monotonic_increasing
                                               and s.is_unique).all()
    # the future: the next 100 grid points, on the series' spiral from its start index
    kf = a.future["t"].to_numpy() / step
    np.testing.assert_allclose(kf, np.tile(np.arange(100, 200), 20), atol=1e-9)
    ts, cw, cc = spiral_paths()
    assert a.start.between(100, 800).all()
    for sid in (0, 7):
        path = cw if a.clockwise[sid] else cc
        fut = a.future.loc[a.future["id"] == sid, ["x", "y"]].to_numpy()
        np.testing.assert_allclose(fut, path[a.start[sid] + 100:a.start[sid] + 200])


def test_future_lies_on_the_spirals_and_noise_has_the_stated_std() -> None:
    d = make_spirals(400, n_observed=100, noise=0.3, random_state=0)
    f = d.future.merge(d.clockwise.reset_index(), on="id")
    cx = np.where(f["clockwise"], -5.0, 5.0)
    r = np.hypot(f["x"] - cx, f["y"])
    theta = np.arctan2(f["y"], f["x"] - cx)
    # counter-clockwise: r = 0.3 z at angle z; clockwise: r = 15 / z at angle z
    z_cc = r[~f["clockwise"]] / 0.3
    np.testing.assert_allclose(np.cos(z_cc), np.cos(theta[~f["clockwise"]]), atol=1e-9)
    z_cw = 15.0 / r[f["clockwise"]]
    np.testing.assert_allclose(np.cos(z_cw), np.cos(theta[f["clockwise"]]), atol=1e-9)
    assert 0.4 < d.clockwise.mean() < 0.6
    # noise: observed minus the noise-free path at the same grid points
    ts, cw, cc = spiral_paths()
    resid = []
    for sid, g in d.observed.groupby("id"):
        path = cw if d.clockwise[sid] else cc
        first_future = d.future.loc[d.future["id"] == sid].iloc[0]
        start = int(np.argmin(np.abs(path[:, 0] - first_future["x"])
                              + np.abs(path[:, 1] - first_future["y"]))) - 100
        k = np.round(g["t"].to_numpy() / ts[1]).astype(int)
        resid.append(g[["x", "y"]].to_numpy() - path[start + k])
    assert np.std(np.concatenate(resid)) == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize("kw, match", [
    (dict(n_observed=101), "cannot exceed"),
    (dict(noise=-1.0), "noise"),
    (dict(n_total=250), "n_total"),
    (dict(n_spirals=0), "n_spirals"),
])
def test_bad_arguments(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_spirals(**{"n_spirals": 5, **kw})
