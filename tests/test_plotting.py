""":func:`latentode.plot_forecast`: panels, observation points, band and regions (no pixels)."""

from __future__ import annotations

import _settings
import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from latentode import LatentODERegressor, plot_forecast  # noqa: E402

TINY = {**_settings.TINY, "max_epochs": 1}


@pytest.fixture(scope="module")
def df(make_oscillators) -> pd.DataFrame:
    return make_oscillators(n_series=6, n_points=15, span=5.0, missing=0.3, noise=0.05)


@pytest.fixture(scope="module")
def est(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(df)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _observed_line(ax):
    lines = [ln for ln in ax.get_lines() if ln.get_label() == "observed"]
    assert len(lines) == 1
    return lines[0]


def test_one_panel_per_channel_with_observed_points(est, df):
    fig = plot_forecast(est, df, "s2", horizon=1.5)
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = fig.get_axes()
    assert len(axes) == 2
    series = df[df["id"] == "s2"]
    for ax, ch in zip(axes, ["x", "v"]):
        line = _observed_line(ax)
        assert len(line.get_xdata()) == int(series[ch].notna().sum())
        np.testing.assert_allclose(np.sort(line.get_ydata()), np.sort(series[ch].dropna()))
        assert ax.get_ylabel() == ch
        # mean line over the whole window and forecast; the band; the two shaded regions
        mean = [ln for ln in ax.get_lines() if ln.get_label() == "predictive mean"][0]
        assert mean.get_xdata().max() == pytest.approx(series["t"].max() + 1.5)
        labels = [c.get_label() for c in ax.collections] + [p.get_label() for p in ax.patches]
        assert "90% predictive band" in labels
        assert "conditioning window" in labels and "forecast" in labels


def test_channels_subset_and_given_axes(est, df):
    fig = plot_forecast(est, df, "s0", channels=["v"], quantiles=None)
    assert len(fig.get_axes()) == 1
    ax = fig.get_axes()[0]
    assert len(_observed_line(ax).get_xdata()) == int(df.loc[df["id"] == "s0", "v"].notna().sum())
    assert not any("band" in c.get_label() for c in ax.collections)

    own_fig, own_axes = plt.subplots(1, 2)
    out = plot_forecast(est, df, "s1", ax=own_axes, quantiles=(0.25, 0.5, 0.75))
    assert out is own_fig and len(out.get_axes()) == 2
    assert any(c.get_label() == "50% predictive band" for c in own_axes[0].collections)


def test_default_horizon_and_datetime_axis(df):
    dt = df.assign(t=pd.Timestamp("2024-03-01") + pd.to_timedelta(df["t"], unit="h"))
    est = LatentODERegressor(**TINY).fit(dt)
    fig = plot_forecast(est, dt, "s3", horizon=pd.Timedelta("2h"))
    assert len(fig.get_axes()) == 2
    fig = plot_forecast(est, dt, "s3")  # default horizon: a quarter of the span
    assert len(_observed_line(fig.get_axes()[0]).get_xdata()) == int(
        dt.loc[dt["id"] == "s3", "x"].notna().sum())


def test_single_series_without_id(df):
    one = df[df["id"] == "s4"].drop(columns="id")
    est = LatentODERegressor(**TINY).fit(one, id_col=None)
    fig = plot_forecast(est, one, horizon=1.0)
    assert len(fig.get_axes()) == 2


def test_bad_arguments(est, df):
    with pytest.raises(ValueError, match="channels"):
        plot_forecast(est, df, "s0", channels=["nope"])
    with pytest.raises(ValueError, match="id"):
        plot_forecast(est, df, "missing")
    with pytest.raises(ValueError, match="pass id="):
        plot_forecast(est, df)
    with pytest.raises(ValueError, match="quantiles"):
        plot_forecast(est, df, "s0", quantiles=(0.95, 0.05))
    with pytest.raises(ValueError, match="horizon"):
        plot_forecast(est, df, "s0", horizon=-1.0)
    _, one_ax = plt.subplots()
    with pytest.raises(ValueError, match="one Axes per channel"):
        plot_forecast(est, df, "s0", ax=one_ax)


def test_import_error_message(monkeypatch, est, df):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install latentode\[plot\]"):
        plot_forecast(est, df, "s0")


def test_title_and_time_label(df):
    numeric = df.assign(id=df["id"].str[1:].astype(np.int64) + 136599)  # int64 ids
    est = LatentODERegressor(**TINY).fit(numeric)
    fig = plot_forecast(est, numeric, 136600, horizon=1.0, time_unit="h")
    assert fig.get_axes()[0].get_title() == "id = 136600"  # not np.int64(136600)
    assert fig.get_axes()[-1].get_xlabel() == "t (h)"
    fig = plot_forecast(est, numeric, 136600, horizon=1.0)
    assert fig.get_axes()[-1].get_xlabel() == "t"  # numeric times carry no unit by themselves


def test_truth_is_drawn_for_the_plotted_series_only(est, df):
    future = pd.DataFrame({"id": ["s2"] * 3 + ["s3"] * 2, "t": [5.1, 5.4, 5.9, 5.2, 5.3],
                           "x": [0.1, np.nan, 0.3, 9.0, 9.0], "v": [1.0, 2.0, 3.0, 9.0, 9.0]})
    fig = plot_forecast(est, df, "s2", horizon=1.5, truth=future)
    ax_x, ax_v = fig.get_axes()
    (tx,) = [ln for ln in ax_x.get_lines() if ln.get_label() == "truth"]
    np.testing.assert_allclose(tx.get_xdata(), [5.1, 5.9])  # NaN rows are not drawn
    np.testing.assert_allclose(tx.get_ydata(), [0.1, 0.3])
    (tv,) = [ln for ln in ax_v.get_lines() if ln.get_label() == "truth"]
    np.testing.assert_allclose(tv.get_ydata(), [1.0, 2.0, 3.0])
    # another series' truth draws nothing; a frame without the channels is refused
    fig = plot_forecast(est, df, "s1", horizon=1.5, truth=future)
    assert not [ln for ln in fig.get_axes()[0].get_lines() if ln.get_label() == "truth"]
    with pytest.raises(ValueError, match="truth lacks"):
        plot_forecast(est, df, "s2", truth=future[["id", "t", "x"]])
