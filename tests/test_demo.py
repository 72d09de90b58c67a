"""``make demo`` (``python -m latentode.demo``) runs end to end: scores and a plot."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("matplotlib")

from _settings import fit_uncalibrated  # noqa: E402

from latentode import demo  # noqa: E402


def test_demo_runs_and_writes_plot(tmp_path, capsys, monkeypatch):
    fits = fit_uncalibrated(monkeypatch)
    out = tmp_path / "sub" / "forecast.png"
    scores = demo.main(["--epochs", "1", "--out", str(out), "--verbose", "0"])
    assert set(scores) == {"interpolation", "extrapolation"}
    assert set(scores["interpolation"]) == {"Latent ODE", "linear interpolation",
                                            "last value carried forward"}
    assert set(scores["extrapolation"]) == {"Latent ODE", "last value carried forward",
                                            "first-day mean"}
    for task in scores.values():
        assert all(math.isfinite(v) and v > 0 for v in task.values())
    assert out.stat().st_size > 10_000  # a PNG with five panels, not an empty file
    printed = capsys.readouterr().out
    assert "interpolation MSE" in printed and str(out) in printed
    assert fits == [1]


def test_demo_passes_its_options_and_follows_the_estimators_defaults(tmp_path, monkeypatch):
    from latentode import LatentODERegressor

    class Fitted(Exception):
        pass

    seen: dict = {}

    def fit(self, *args, **kwargs):  # stands in for training: record the estimator, stop
        seen.update(self.get_params())
        raise Fitted

    monkeypatch.setattr(LatentODERegressor, "fit", fit)
    names = ("dynamics_activation", "likelihood", *demo.FORECAST_OPTIONS)
    default = LatentODERegressor().get_params()  # what the demo's flags default to
    for flags, changed in [([], {}),
                           (["--dynamics-activation", "elu", "--likelihood", "student_t"],
                            {"dynamics_activation": "elu", "likelihood": "student_t"}),
                           (["--readout-sides", "split", "--forecast-noise"],
                            {"readout_sides": "split", "forecast_noise": True}),
                           (["--readout-sides", "shared", "--no-forecast-noise",
                             "--forecast-share", "0", "--forecast-mode", "swap"],
                            {"readout_sides": "shared", "forecast_noise": False,
                             "forecast_share": 0.0, "forecast_mode": "swap"}),
                           (["--forecast-share", "0.5", "--forecast-mode", "add"],
                            {"forecast_share": 0.5, "forecast_mode": "add"})]:
        with pytest.raises(Fitted):
            demo.main(["--out", str(tmp_path / "f.png"), "--verbose", "0", *flags])
        assert {k: seen[k] for k in names} == {**{k: default[k] for k in names}, **changed}


def test_demo_scores_both_point_rules_of_one_fit(tmp_path, capsys, monkeypatch):
    fits = fit_uncalibrated(monkeypatch)  # the point rules' means: the intervals play no part
    scores = demo.main(["--epochs", "1", "--out", str(tmp_path / "f.png"), "--verbose", "0",
                        "--point-rules", "posterior_mean", "predictive_mean"])
    assert fits == [1]
    rows = {"Latent ODE (posterior_mean)", "Latent ODE (predictive_mean)"}
    assert rows <= set(scores["interpolation"]) and rows <= set(scores["extrapolation"])
    for task in scores.values():
        a, b = task["Latent ODE (posterior_mean)"], task["Latent ODE (predictive_mean)"]
        assert math.isfinite(a) and math.isfinite(b) and a != b
    printed = capsys.readouterr().out
    assert "point_prediction='predictive_mean': predict" in printed
