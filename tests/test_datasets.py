"""Tests of latentode.datasets: PhysioNet 2012 loaders, scaling, synthetic data."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm
from scipy.optimize import minimize_scalar

from latentode.datasets import (
    PHYSIONET_PARAMETERS,
    damped_oscillator_matrix,
    load_physionet2012,
    load_physionet_sample,
    make_damped_oscillators,
    make_ornstein_uhlenbeck,
    make_oscillator_classes,
    make_periodic,
    paper_mse,
    physionet_minmax,
    scale_physionet,
)

ARCHIVE = Path("/work/shared/data/physionet2012/set-ab.tar.gz")
PARAMS = PHYSIONET_PARAMETERS
NAN = np.nan

# ---------------------------------------------------------------------------------------------
# A hand-made two-set archive with known content
# ---------------------------------------------------------------------------------------------
REC_A1 = """Time,Parameter,Value
00:00,RecordID,140001
00:00,Age,70
00:00,Gender,-1
00:00,Height,-1
00:00,ICUType,2
00:00,Weight,80.5
00:30,HR,80
00:30,HR,90
00:31,HR,100
00:31,Temp,37.0
01:00,Temp,-17.8
01:00,Weight,82
"""
# all descriptors unknown and nothing else at 00:00: the t=0 row must vanish (unknown_as_nan)
REC_A2 = """Time,Parameter,Value
00:00,RecordID,140002
00:00,Gender,-1
00:00,Height,-1
00:00,Weight,-1
02:15,pH,7.4
"""
REC_B1 = """Time,Parameter,Value
00:00,RecordID,150001
00:00,Age,55
03:00,MechVent,1
"""
OUTCOMES_A = """RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
140002,12,3,9,-1,0
140001,20,7,4,3,1
"""
OUTCOMES_B = """RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
150001,8,1,5,-1,0
"""


def _write_archive(root: Path, records: dict[str, str] | None = None) -> Path:
    files = {
        "set-a/140001.txt": REC_A1,
        "set-a/140002.txt": REC_A2,
        "set-b/150001.txt": REC_B1,
        "Outcomes-a.txt": OUTCOMES_A,
        "Outcomes-b.txt": OUTCOMES_B,
    }
    files.update(records or {})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame([{"id": r["id"], "t": r["t"], **{p: r.get(p, NAN) for p in PARAMS}}
                        for r in rows])
    return out.astype({"id": np.int64, **{p: np.float64 for p in PARAMS}})


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return _write_archive(tmp_path / "physionet")


def test_tiny_folder_exact_frame(tiny: Path) -> None:
    df = load_physionet2012(tiny)
    expected = _frame([
        {"id": 140001, "t": 0.0, "Age": 70, "ICUType": 2, "Weight": 80.5},
        {"id": 140001, "t": 0.5, "HR": 85.0},  # two HR at 00:30 averaged
        {"id": 140001, "t": 31 / 60, "HR": 100, "Temp": 37.0},
        {"id": 140001, "t": 1.0, "Temp": -17.8, "Weight": 82},  # negative Temp is kept
        {"id": 140002, "t": 2.25, "pH": 7.4},  # its t=0 row had only unknown (-1) descriptors
        {"id": 150001, "t": 0.0, "Age": 55},
        {"id": 150001, "t": 3.0, "MechVent": 1},
    ])  # fmt: skip
    pd.testing.assert_frame_equal(df, expected)
    assert list(df.columns) == ["id", "t", *PARAMS] and len(PARAMS) == 41


def test_tiny_unknown_kept_like_paper(tiny: Path) -> None:
    df = load_physionet2012(tiny, unknown_as_nan=False, sets=("a",))
    t0 = df[df.t == 0.0].set_index("id")
    assert t0.loc[140001, "Gender"] == -1 and t0.loc[140001, "Height"] == -1
    assert t0.loc[140002, ["Gender", "Height", "Weight"]].tolist() == [-1, -1, -1]
    assert len(df) == 6  # 140002 keeps its t=0 row


def test_tiny_quantization_merges_bins(tiny: Path) -> None:
    df = load_physionet2012(tiny, quantization=0.5, sets=("a",))
    expected = _frame([
        {"id": 140001, "t": 0.0, "Age": 70, "ICUType": 2, "Weight": 80.5},
        # 00:30, 00:30, 00:31 share the bin t=0.5: mean of all three HR values, not of means
        {"id": 140001, "t": 0.5, "HR": 90.0, "Temp": 37.0},
        {"id": 140001, "t": 1.0, "Temp": -17.8, "Weight": 82},
        {"id": 140002, "t": 2.25 // 0.5 * 0.5, "pH": 7.4},  # 2.25 / 0.5 = 4.5 -> 4 (half-even)
    ])  # fmt: skip
    pd.testing.assert_frame_equal(df, expected)


def test_tiny_paper_quantization_rounding(tiny: Path) -> None:
    df = load_physionet2012(tiny, quantization=0.016, sets=("a",))
    t = df.loc[df.id == 140001, "t"].to_numpy()
    # Python's round, as the paper: 0.5/0.016 = 31.25 -> 31, 0.5167/0.016 -> 32, 62.5 -> 62
    np.testing.assert_allclose(t, [0.0, 31 * 0.016, 32 * 0.016, 62 * 0.016], rtol=0, atol=1e-15)
    assert df.loc[df.id == 140001, "HR"].tolist()[1:3] == [85.0, 100.0]


def test_tiny_tar_and_parent_folder_match(tiny: Path, tmp_path: Path) -> None:
    tar_dir = tmp_path / "tarred"
    tar_dir.mkdir()
    with tarfile.open(tar_dir / "set-ab.tar.gz", "w:gz") as tar:
        for name in ("set-a", "set-b", "Outcomes-a.txt", "Outcomes-b.txt"):
            tar.add(tiny / name, arcname=name)
    ref, ref_out = load_physionet2012(tiny, return_outcomes=True)
    for path in (tar_dir / "set-ab.tar.gz", tar_dir):
        df, out = load_physionet2012(path, return_outcomes=True)
        pd.testing.assert_frame_equal(df, ref)
        pd.testing.assert_frame_equal(out, ref_out)
    assert ref_out.index.tolist() == [140001, 140002, 150001]
    assert ref_out.loc[140001].tolist() == [20, 7, 4, 3, 1]


def test_tiny_selection(tiny: Path) -> None:
    assert load_physionet2012(tiny, n_stays=1).id.unique().tolist() == [140001]
    df, out = load_physionet2012(tiny, record_ids=[150001], return_outcomes=True)
    assert df.id.unique().tolist() == [150001] and out.index.tolist() == [150001]
    _, out_b = load_physionet2012(tiny, sets=("b",), return_outcomes=True)
    assert out_b["SAPS-I"].tolist() == [8]
    with pytest.raises(ValueError, match="not found"):
        load_physionet2012(tiny, record_ids=[1])
    with pytest.raises(ValueError, match=r"set\(s\) \['c'\]"):
        load_physionet2012(tiny, sets=("a", "c"))


def test_wrong_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "set-ab.tar.gz"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_physionet2012(missing)
    with pytest.raises(ValueError, match="holds no PhysioNet"):
        load_physionet2012(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a tar archive"):
        load_physionet2012(tmp_path / "notes.txt")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("00:45,HR", "value is not a number"),  # too few fields
        ("00:45,HR,abc", "value is not a number"),
        ("0045,HR,80", "time is not HH:MM"),
        ("00:75,HR,80", "time is not HH:MM"),
        ("00:45,Pulse,80", "unknown parameter"),
        ("00:45,HR,80,1", "expected 'HH:MM,Parameter,Value'"),  # too many fields
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    bad = "Time,Parameter,Value\n00:00,RecordID,140003\n00:00,Age,40\n" + line + "\n"
    root = _write_archive(tmp_path / "p", {"set-a/140003.txt": bad})
    with pytest.raises(ValueError, match=rf"140003\.txt, line 4 \(({why})"):
        load_physionet2012(root)


def test_malformed_header_and_record_id(tmp_path: Path) -> None:
    root = _write_archive(tmp_path / "p", {"set-a/140003.txt": "Time;Parameter;Value\n"})
    with pytest.raises(ValueError, match=r"140003\.txt, line 1"):
        load_physionet2012(root)
    wrong_id = "Time,Parameter,Value\n00:00,RecordID,999\n"
    root = _write_archive(tmp_path / "q", {"set-a/140003.txt": wrong_id})
    with pytest.raises(ValueError, match=r"140003\.txt, line 2 \(RecordID differs"):
        load_physionet2012(root)


def test_bad_options(tiny: Path) -> None:
    with pytest.raises(ValueError, match="quantization"):
        load_physionet2012(tiny, quantization=0)
    with pytest.raises(ValueError, match="scaling"):
        load_physionet2012(tiny, scaling="zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_stays"):
        load_physionet_sample(n_stays=0)


# ---------------------------------------------------------------------------------------------
# Bundled sample
# ---------------------------------------------------------------------------------------------
def test_sample_loads_with_documented_sizes() -> None:
    df, out = load_physionet_sample(return_outcomes=True)
    assert list(df.columns) == ["id", "t", *PARAMS]
    assert df.shape == (22_456, 43)
    assert df.id.nunique() == 300 and int(df[PARAMS].notna().sum().sum()) == 131_367
    assert df.t.min() == 0.0 and df.t.max() == 48.0
    assert not df.duplicated(["id", "t"]).any()
    assert (df[["id", "t"]].diff().dropna().pipe(lambda d: (d.id > 0) | (d.t > 0))).all()
    assert df[PARAMS].notna().any(axis=1).all()  # no all-NaN row
    assert not (df[["Gender", "Height", "Weight"]] == -1).any().any()
    assert out.shape == (300, 5) and out.index.tolist() == sorted(df.id.unique())
    assert int(out["In-hospital_death"].sum()) == 54


def test_sample_subset_and_quantization() -> None:
    full = load_physionet_sample()
    first = load_physionet_sample(n_stays=10)
    ids = np.sort(full.id.unique())[:10]
    pd.testing.assert_frame_equal(first, full[full.id.isin(ids)].reset_index(drop=True))
    # 0.016 h < 1 min: no two minutes share a bin, times only shrink by 0.96
    q = load_physionet_sample(quantization=0.016)
    assert len(q) == len(full)
    np.testing.assert_allclose(q.t, np.round(full.t / 0.016) * 0.016)
    hourly = load_physionet_sample(quantization=1.0)
    assert len(hourly) < len(full) and np.all(hourly.t == np.round(hourly.t))
    assert hourly.t.max() == 48.0 and not hourly.duplicated(["id", "t"]).any()
    # bin means: per stay, the hourly HR means are means of the minute-level HR values
    one = full[full.id == ids[0]].dropna(subset=["HR"])
    counts = one.groupby(np.round(one.t))["HR"].mean()
    got = hourly[(hourly.id == ids[0])].dropna(subset=["HR"]).set_index("t")["HR"]
    # minute rows were already averaged; with no duplicate minutes they are the raw values
    np.testing.assert_allclose(got.to_numpy(), counts.to_numpy())


def test_minmax_scaling_range() -> None:
    raw = load_physionet_sample()
    lo, hi = physionet_minmax(raw)
    assert lo["Age"] == raw["Age"].min() and hi["HR"] == raw["HR"].max()
    assert lo["Temp"] < 0  # recorded -17.8 degC readings
    scaled = load_physionet_sample(scaling="minmax")
    values = scaled[PARAMS]
    observed = values.notna().any()
    np.testing.assert_allclose(values.loc[:, observed].min(), 0.0, atol=1e-12)
    spread = (hi - lo)[observed] > 0
    np.testing.assert_allclose(values.loc[:, observed].max()[spread], 1.0, rtol=1e-12)
    pd.testing.assert_frame_equal(values.isna(), raw[PARAMS].isna())
    paper = load_physionet_sample(scaling="paper")
    np.testing.assert_allclose(paper["HR"], (raw["HR"] - lo["HR"]) / hi["HR"])
    assert paper["Temp"].max() == pytest.approx((hi["Temp"] - lo["Temp"]) / hi["Temp"])
    assert paper["Temp"].max() > 1.0  # why "paper" is not a [0, 1] scaling
    # statistics from elsewhere (e.g. a training split)
    half = scale_physionet(raw, "minmax", minmax=(lo * 0, hi * 2))
    np.testing.assert_allclose(half["HR"], raw["HR"] / (2 * hi["HR"]))


# ---------------------------------------------------------------------------------------------
# Paper MSE
# ---------------------------------------------------------------------------------------------
def test_paper_mse_is_reexported() -> None:
    # the metric lives in latentode.evaluation (tested there); its former home re-exports it
    from latentode.evaluation import paper_mse as evaluation_paper_mse

    assert paper_mse is evaluation_paper_mse
    y = np.array([[[0.0, 1.0], [1.0, NAN]]])
    assert paper_mse(y, np.array([[[1.0, 0.0], [1.0, 0.0]]])) == 0.75


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------
def test_make_periodic_shapes_and_reproducibility() -> None:
    a = make_periodic(n_series=50, n_points=40, random_state=3)
    b = make_periodic(n_series=50, n_points=40, random_state=3)
    c = make_periodic(n_series=50, n_points=40, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.x0, c.x0)
    assert list(a.columns) == ["id", "t", "x0"] and a.shape == (2000, 3)
    assert a.id.tolist() == np.repeat(np.arange(50), 40).tolist()
    assert a.t.between(0, 5).all() and (a.groupby("id").t.diff().dropna() > 0).all()
    first = a.groupby("id").t.first().to_numpy()
    assert np.ptp(first) > 0.01 and len(np.unique(a.t)) == len(a)  # each series has its own times


def test_make_periodic_truth_and_noise() -> None:
    df, truth = make_periodic(2000, 50, noise_std=0.1, random_state=0, return_truth=True)
    resid = (df.x0 - truth.x0).to_numpy()
    assert resid.std() == pytest.approx(0.1, rel=0.02) and abs(resid.mean()) < 0.003
    # a sinusoid with amplitude in [0.5, 1.5] around an offset of about N(0, 0.1)
    rng = truth.groupby("id").x0.agg(np.ptp)
    assert rng.max() <= 3.0 and rng.median() > 1.0
    # the clean series is exactly c + a sin(2 pi f t) + b cos(2 pi f t), f in [0.4, 0.8]
    one = truth[truth.id == 0]

    def sse(f: float) -> float:
        w = 2 * np.pi * f * one.t.to_numpy()
        design = np.column_stack([np.sin(w), np.cos(w), np.ones(len(w))])
        coef, *_ = np.linalg.lstsq(design, one.x0.to_numpy(), rcond=None)
        return float(np.sum((design @ coef - one.x0.to_numpy()) ** 2))

    grid = np.linspace(0.4, 0.8, 401)
    best = grid[np.argmin([sse(f) for f in grid])]
    fit = minimize_scalar(sse, bounds=(best - 0.001, best + 0.001), method="bounded",
                          options={"xatol": 1e-12})
    assert fit.fun < 1e-16 and 0.4 <= fit.x <= 0.8


def test_make_periodic_channels_and_missing() -> None:
    df = make_periodic(300, 60, n_channels=3, obs_fraction=0.5, chirp=True, random_state=1)
    assert list(df.columns) == ["id", "t", "x0", "x1", "x2"]
    observed = df[["x0", "x1", "x2"]].notna()
    assert observed.any(axis=1).all()
    # P(entry observed | row kept) = 0.5 / (1 - 0.5**3)
    assert observed.to_numpy().mean() == pytest.approx(0.5 / 0.875, abs=0.01)
    assert len(df) == pytest.approx(300 * 60 * 0.875, rel=0.02)
    with pytest.raises(ValueError, match="obs_fraction"):
        make_periodic(obs_fraction=0.0)


def test_make_damped_oscillators_dynamics() -> None:
    df, truth = make_damped_oscillators(
        200, 30, omega=1.5, damping=0.1, random_state=7, return_truth=True
    )
    again = make_damped_oscillators(200, 30, omega=1.5, damping=0.1, random_state=7)
    pd.testing.assert_frame_equal(df, again)
    assert list(df.columns) == ["id", "t", "x0", "x1"] and df.id.nunique() == 200
    assert df.t.between(0, 10).all()
    # consecutive noise-free states of a series follow z(t2) = expm(A (t2 - t1)) z(t1)
    a = damped_oscillator_matrix(1.5, 0.1)
    for sid in (0, 1, 199):
        s = truth[truth.id == sid]
        z, t = s[["x0", "x1"]].to_numpy(), s.t.to_numpy()
        pred = np.stack([expm(a * dt) @ z0 for dt, z0 in zip(np.diff(t), z[:-1])])
        np.testing.assert_allclose(pred, z[1:], atol=1e-10)
    # energy v^2 + omega^2 x^2 never grows (damping)
    energy = truth.x1**2 + 1.5**2 * truth.x0**2
    assert (energy.groupby(truth.id).diff().dropna() <= 1e-12).all()
    # missing at random: P(missing | row kept) = 0.2 * 0.8 / (1 - 0.2**2)
    assert df[["x0", "x1"]].isna().to_numpy().mean() == pytest.approx(0.16 / 0.96, abs=0.01)
    resid = (df[["x0", "x1"]] - truth[["x0", "x1"]]).to_numpy()
    assert np.nanstd(resid) == pytest.approx(0.01, rel=0.05)



def test_make_oscillator_classes_is_one_oscillator_per_class() -> None:
    df, y = make_oscillator_classes(7, 12, omegas=(0.8, 1.8, 3.2), random_state=5)
    assert list(df.columns) == ["id", "t", "x0", "x1"]
    assert list(y.index) == list(range(21)) == sorted(df.id.unique())
    assert y.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    for k, omega in enumerate((0.8, 1.8, 3.2)):
        part = make_damped_oscillators(7, 12, omega=omega, time_range=(0.0, 6.0),
                                       missing_fraction=0.3, noise_std=0.05,
                                       random_state=5 + k)
        got = df[df.id.between(7 * k, 7 * k + 6)].reset_index(drop=True)
        part["id"] += 7 * k
        pd.testing.assert_frame_equal(got, part)
    again, y_again = make_oscillator_classes(7, 12, omegas=(0.8, 1.8, 3.2), random_state=5)
    pd.testing.assert_frame_equal(df, again)
    pd.testing.assert_series_equal(y, y_again)
    with pytest.raises(ValueError, match="at least two classes"):
        make_oscillator_classes(5, omegas=(1.0,))
    with pytest.raises(ValueError, match="n_per_class"):
        make_oscillator_classes(0)
    with pytest.raises(ValueError, match="random_state"):
        make_oscillator_classes(5, random_state=1.5)

@pytest.mark.parametrize("theta", [0.8, 0.0])
def test_make_ornstein_uhlenbeck_transitions(theta: float) -> None:
    """Standardised exact transitions are N(0, 1); OU is stationary, a random walk's variance
    grows linearly in time; missing values and noise as asked."""
    kw = dict(theta=theta, sigma=0.6, mean=1.0, n_channels=2, random_state=3)
    df, truth = make_ornstein_uhlenbeck(400, 40, missing_fraction=0.3, noise_std=0.05,
                                        return_truth=True, **kw)
    pd.testing.assert_frame_equal(df, make_ornstein_uhlenbeck(400, 40, missing_fraction=0.3,
                                                              noise_std=0.05, **kw))
    assert list(df.columns) == ["id", "t", "x0", "x1"] and df.t.between(0, 10).all()
    x = truth[["x0", "x1"]].to_numpy()
    same = (truth.id.to_numpy()[1:] == truth.id.to_numpy()[:-1])
    dt = np.diff(truth.t.to_numpy())[same, None]
    if theta > 0:
        var = 0.36 * -np.expm1(-2 * theta * dt) / (2 * theta)
    else:
        var = 0.36 * dt
    z = (x[1:][same] - 1.0 - (x[:-1][same] - 1.0) * np.exp(-theta * dt)) / np.sqrt(var)
    assert z.mean() == pytest.approx(0.0, abs=0.02) and z.std() == pytest.approx(1.0, abs=0.02)
    first = truth.groupby("id").t.idxmin()
    if theta > 0:  # the stationary law N(mean, sigma^2 / (2 theta)) at every time
        assert x.std() == pytest.approx(0.6 / np.sqrt(2 * theta), rel=0.05)
        assert x.mean() == pytest.approx(1.0, abs=0.05)
    else:  # a random walk from the mean: Var x(t) = sigma^2 t
        late = truth.t.to_numpy() > 8
        assert x[late].var() == pytest.approx(0.36 * truth.t[late].mean(), rel=0.1)
        assert np.abs(x[first.to_numpy()] - 1.0).mean() < 0.6 * np.sqrt(truth.t[first].mean())
    resid = (df[["x0", "x1"]] - truth[["x0", "x1"]]).to_numpy()
    assert np.nanstd(resid) == pytest.approx(0.05, rel=0.05)
    # P(missing | row kept) = 0.3 * 0.7 / (1 - 0.3**2)
    assert df[["x0", "x1"]].isna().to_numpy().mean() == pytest.approx(0.21 / 0.91, abs=0.01)


def test_make_ornstein_uhlenbeck_checks() -> None:
    for bad in (dict(theta=-1.0), dict(sigma=np.nan), dict(initial_std=-0.1),
                dict(missing_fraction=1.0), dict(noise_std=-0.1), dict(mean=np.inf)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_ornstein_uhlenbeck(3, 5, **bad)
    walk = make_ornstein_uhlenbeck(50, 5, theta=0.0, sigma=0.0, noise_std=0.0, mean=2.0,
                                   random_state=0)
    assert (walk.x0 == 2.0).all()  # no diffusion, started at the mean: constant


# ---------------------------------------------------------------------------------------------
# Full archive (slow; run with -m slow)
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.is_file(), reason="PhysioNet 2012 archive not available")
def test_full_archive() -> None:
    start = time.perf_counter()
    df, out = load_physionet2012(ARCHIVE, return_outcomes=True)
    elapsed = time.perf_counter() - start
    assert df.id.nunique() == 8000 and out.shape == (8000, 5)
    assert df.shape == (598_332, 43) and int(df[PARAMS].notna().sum().sum()) == 3_500_305
    assert df.t.between(0, 48).all() and df[PARAMS].notna().any(axis=1).all()
    assert int(out["In-hospital_death"].sum()) == 554 + 568
    assert out.index.is_monotonic_increasing and set(out.index) == set(df.id)
    print(f"full archive parsed in {elapsed:.1f} s")
    # the shipped sample is exactly what the archive gives for its stays
    sample = load_physionet_sample(quantization=0.016)
    sub = df[df.id.isin(sample.id.unique())]
    exact = load_physionet2012(ARCHIVE, sets=("a",), record_ids=sample.id.unique(),
                               quantization=0.016)
    pd.testing.assert_frame_equal(sample, exact)
    assert len(sub) == len(load_physionet_sample())
