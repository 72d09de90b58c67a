"""PhysioNet / Computing in Cardiology Challenge 2012 loaders, scaling and the paper's MSE.

The archive (``set-ab.tar.gz``: ``set-a/``, ``set-b/`` with one ``RECORDID.txt`` per ICU stay and
``Outcomes-a.txt``, ``Outcomes-b.txt``) is turned into the long format used everywhere in
latentode: one row per ``(id, t)`` with the 41 parameters of the Latent ODE paper as columns and
NaN where a parameter was not measured at that time.

Protocol of the paper's code (YuliaRubanova/latent_ode, ``physionet.py`` and
``lib/parse_datasets.py``) and where this module follows or deviates from it:

* **Parameters**: the 41 names of :data:`PHYSIONET_PARAMETERS` (all parameters but
  ``RecordID``), in the paper's order. The five static descriptors (Age, Gender, Height,
  ICUType, Weight) are ordinary channels observed at ``t = 0``; ``Weight`` is also measured
  later in the stay and shares the channel, as in the paper.
* **Time**: ``HH:MM`` since ICU admission, converted to hours ``h + m / 60`` (0 to 48).
* **Quantization** ``q`` (paper: 0.016 h): ``t <- round(t / q) * q`` with round-half-to-even
  (Python's ``round``, which the paper uses, and :func:`numpy.round` agree) and all values of a
  channel that land in the same bin averaged. Without quantization, duplicates at the same
  minute are averaged. Note that with ``q = 0.016 h`` (0.96 min) two distinct minutes never
  share a bin, so the paper's quantization only rescales time slightly.
* **Unknown values (-1)**: the challenge's README says ``-1`` means *unknown* for the
  descriptors. The paper's code does **not** treat any value as missing: a ``-1`` Height,
  Weight or Gender is an observed value ``-1`` there (and enters the min/max scaling). In the
  archive, ``-1`` occurs only at 00:00 in Gender (8 stays), Height (3,824) and Weight (673).
  By default (``unknown_as_nan=True``) this module turns ``-1`` in the five descriptor
  channels into NaN (not observed); ``unknown_as_nan=False`` keeps them, as the paper's code
  does. Other negative values (e.g. 41 ``Temp`` readings of -17.8, -12.8, -12.5 degC, obvious
  sensor or unit errors) are real recorded values and are kept, as in the paper.
* **Scaling**: the paper scales each feature as ``(x - min) / max`` with the min and max of the
  observed values over the whole loaded data set (``max == 0`` replaced by 1), see
  :func:`physionet_minmax`. Because the archive holds negative temperatures this is *not* a
  ``[0, 1]`` range (Temp reaches 1.42), so two options exist: ``scaling="paper"`` (exactly the
  paper's formula) and ``scaling="minmax"`` (``(x - min) / (max - min)``, exactly ``[0, 1]``).
* **Metric**: :func:`latentode.evaluation.paper_mse` (re-exported here, its former home).

Licence of the data: PhysioNet open access, Open Data Commons Attribution 1.0 (ODC-By 1.0).
Cite Silva et al., Computing in Cardiology 2012;39:245-248 and Goldberger et al., Circulation
2000;101(23):e215-e220 (see ``datasets/README.md``).
"""

from __future__ import annotations

import io
import lzma
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from latentode.evaluation.metrics import paper_mse  # re-exported: its home before #17

__all__ = [
    "PHYSIONET_PARAMETERS",
    "PHYSIONET_DESCRIPTORS",
    "PHYSIONET_OUTCOMES",
    "load_physionet2012",
    "load_physionet_sample",
    "physionet_minmax",
    "scale_physionet",
    "paper_mse",
]

#: The 41 parameters of the Latent ODE paper's PhysioNet experiments, in the order of
#: ``PhysioNet.params`` in YuliaRubanova/latent_ode ``physionet.py`` (all but RecordID).
PHYSIONET_PARAMETERS: list[str] = [
    "Age", "Gender", "Height", "ICUType", "Weight", "Albumin", "ALP", "ALT", "AST", "Bilirubin",
    "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR",
    "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP", "NIMAP", "NISysABP", "PaCO2",
    "PaO2", "pH", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT",
    "Urine", "WBC",
]  # fmt: skip

#: The static descriptors recorded at 00:00, for which ``-1`` means unknown.
PHYSIONET_DESCRIPTORS: list[str] = ["Age", "Gender", "Height", "ICUType", "Weight"]

#: Columns of ``Outcomes-*.txt`` besides RecordID.
PHYSIONET_OUTCOMES: list[str] = [
    "SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death",
]  # fmt: skip

_HEADER = b"Time,Parameter,Value"
# "RecordID" is code 0, the 41 parameters are codes 1..41 (code - 1 = column index).
_CATEGORIES = ["RecordID", *PHYSIONET_PARAMETERS]
_DESCRIPTOR_CODES = np.array([_CATEGORIES.index(p) for p in PHYSIONET_DESCRIPTORS])
_RECORD_RE = re.compile(r"(?:^|/)set-([A-Za-z0-9]+)/(\d+)\.txt$")
_OUTCOMES_RE = re.compile(r"(?:^|/)Outcomes-([A-Za-z0-9]+)\.txt$")
_SAMPLE_FILE = "physionet2012_sample.csv.xz"
_SAMPLE_OUTCOMES_FILE = "physionet2012_sample_outcomes.csv"

Scaling = Literal["minmax", "paper"] | None


# --------------------------------------------------------------------------------------------
# Reading the archive
# --------------------------------------------------------------------------------------------
class _Record:
    """One raw record file: where it came from and its bytes."""

    __slots__ = ("name", "set", "record_id", "data")

    def __init__(self, name: str, set_: str, record_id: int, data: bytes) -> None:
        self.name = name
        self.set = set_
        self.record_id = record_id
        self.data = data


def _resolve_source(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """Return ``("tar", file)`` or ``("dir", folder)`` for a user-given path."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"PhysioNet 2012 data not found: {str(p)!r} does not exist (expected set-ab.tar.gz, "
            "a folder with set-a/ set-b/ and Outcomes-*.txt, or the folder holding the tar.gz)"
        )
    if p.is_file():
        if tarfile.is_tarfile(p):
            return "tar", p
        raise ValueError(f"{str(p)!r} is not a tar archive (expected e.g. set-ab.tar.gz)")
    if any((p / d).is_dir() for d in os.listdir(p) if re.fullmatch(r"set-[A-Za-z0-9]+", d)):
        return "dir", p
    if (p / "set-ab.tar.gz").is_file():
        return "tar", p / "set-ab.tar.gz"
    tars = sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith((".tar.gz", ".tgz")))
    if len(tars) == 1:
        return "tar", tars[0]
    raise ValueError(
        f"{str(p)!r} holds no PhysioNet 2012 data: expected set-a/ set-b/ folders or a single "
        f"*.tar.gz archive (found {len(tars)} archives)"
    )


def _iter_sources(kind: str, root: Path, sets: set[str]) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield ``("record"|"outcomes", set, name, bytes)`` for the members of the wanted sets."""
    if kind == "tar":
        with tarfile.open(root, mode="r|*") as tar:  # streaming: one pass over the gzip stream
            for member in tar:
                if not member.isfile():
                    continue
                m = _RECORD_RE.search(member.name)
                o = None if m else _OUTCOMES_RE.search(member.name)
                hit = m or o
                if hit is None or hit.group(1) not in sets:
                    continue
                fh = tar.extractfile(member)
                assert fh is not None  # regular file
                yield ("record" if m else "outcomes"), hit.group(1), member.name, fh.read()
        return
    for s in sorted(sets):
        folder = root / f"set-{s}"
        if folder.is_dir():
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it if e.is_file() and e.name.endswith(".txt"))
            for name in names:
                if re.fullmatch(r"\d+\.txt", name):
                    yield "record", s, str(folder / name), (folder / name).read_bytes()
        outcomes = root / f"Outcomes-{s}.txt"
        if outcomes.is_file():
            yield "outcomes", s, str(outcomes), outcomes.read_bytes()


def _strip_header(rec: _Record) -> bytes:
    data = rec.data
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nl = data.find(b"\n")
    header = (data if nl < 0 else data[:nl]).strip()
    if header != _HEADER:
        raise ValueError(
            f"malformed PhysioNet record {rec.name}, line 1: expected header "
            f"{_HEADER.decode()!r}, got {header[:60].decode(errors='replace')!r}"
        )
    body = b"" if nl < 0 else data[nl + 1 :]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body


def _locate(line_starts: np.ndarray, records: Sequence[_Record], row: int) -> tuple[str, int]:
    """Map a 0-based row of the concatenated bodies to ``(file name, 1-based line number)``."""
    i = int(np.searchsorted(line_starts, row, side="right")) - 1
    return records[i].name, int(row - line_starts[i]) + 2  # +1 for 1-based, +1 for the header


def _malformed(name: str, line: int, records: Sequence[_Record], why: str) -> ValueError:
    text = ""
    for rec in records:
        if rec.name == name:
            lines = rec.data.splitlines()
            if 0 < line <= len(lines):
                text = f": {lines[line - 1][:80].decode(errors='replace')!r}"
            break
    return ValueError(f"malformed PhysioNet record {name}, line {line} ({why}){text}")


def _as_float(column: pd.Series) -> np.ndarray:
    """Column to float64, with NaN where an entry is not a number."""
    if column.dtype.kind in "fiu":
        return column.to_numpy(np.float64)
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64)


def _param_codes(column: pd.Series) -> np.ndarray:
    """Codes into ``_CATEGORIES`` (0 = RecordID, 1..41 = parameters, -1 = unknown/missing)."""
    cat = column.astype("category")
    lookup = pd.Index(_CATEGORIES).get_indexer(cat.cat.categories.astype(str))
    lookup = np.append(lookup, -1)  # code -1 (missing) -> -1
    return lookup[cat.cat.codes.to_numpy(np.int64)]


def _parse_records(records: Sequence[_Record]) -> dict[str, np.ndarray]:
    """Parse raw record files into flat observation arrays ``id, t, code, value``.

    All files are concatenated and parsed by one call of pandas' C parser (``HH:MM`` split into
    two columns by replacing ``:`` with ``,``); errors are mapped back to file and line.
    """
    bodies = [_strip_header(r) for r in records]
    n_lines = np.array([b.count(b"\n") for b in bodies], dtype=np.int64)
    line_starts = np.concatenate([[0], np.cumsum(n_lines)[:-1]]) if len(bodies) else n_lines
    buf = b"".join(bodies)
    del bodies
    buf = buf.replace(b":", b",")
    if not buf:
        empty_f, empty_i = np.empty(0, np.float64), np.empty(0, np.int64)
        return {"id": empty_i, "t": empty_f, "minute": empty_i, "code": empty_i, "value": empty_f}
    try:
        raw = pd.read_csv(
            io.BytesIO(buf),
            header=None,
            names=["h", "m", "param", "value"],
            dtype={"param": "category"},
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:  # too many fields on some line
        found = re.search(r"line (\d+)", str(exc))
        if found is None:  # pragma: no cover - pandas message format changed
            msg = f"malformed PhysioNet record among {len(records)} files: {exc}"
            raise ValueError(msg) from exc
        name, line = _locate(line_starts, records, int(found.group(1)) - 1)
        raise _malformed(name, line, records, "expected 'HH:MM,Parameter,Value'") from None
    del buf
    if len(raw) != int(n_lines.sum()):  # pragma: no cover - defensive
        raise ValueError("internal error: PhysioNet line count mismatch")

    ids = np.repeat(np.array([r.record_id for r in records], dtype=np.int64), n_lines)
    h = _as_float(raw["h"])
    m = _as_float(raw["m"])
    value = _as_float(raw["value"])
    code = _param_codes(raw["param"])
    blank = np.isnan(h) & np.isnan(m) & raw["param"].isna().to_numpy() & np.isnan(value)
    bad_time = ~blank & (
        np.isnan(h) | np.isnan(m) | (h < 0) | (m < 0) | (m >= 60) | (h != np.floor(h))
        | (m != np.floor(m))
    )  # fmt: skip
    rid_rows = code == 0
    checks = [
        (bad_time, "time is not HH:MM"),
        (~blank & (code < 0), "unknown parameter"),
        (~blank & ~np.isfinite(value), "value is not a number"),
        (rid_rows & (value != ids), "RecordID differs from the file name"),
    ]
    for bad, why in checks:
        if bad.any():
            name, line = _locate(line_starts, records, int(np.argmax(bad)))
            raise _malformed(name, line, records, why)

    keep = ~blank & ~rid_rows
    h, m = h[keep], m[keep]
    return {
        "id": ids[keep],
        "t": h + m / 60.0,  # hours, as the paper: float(h) + float(m) / 60
        "minute": (h * 60 + m).astype(np.int64),  # exact grouping key at minute resolution
        "code": code[keep],
        "value": value[keep],
    }


# --------------------------------------------------------------------------------------------
# Long frame assembly
# --------------------------------------------------------------------------------------------
def _check_quantization(quantization: float | None) -> float | None:
    if quantization is None:
        return None
    q = float(quantization)
    if not np.isfinite(q) or q <= 0:
        raise ValueError(f"quantization must be a positive number of hours or None, got {q!r}")
    return q


def _assemble(
    obs: dict[str, np.ndarray],
    quantization: float | None,
    unknown_as_nan: bool,
    scaling: Scaling,
) -> pd.DataFrame:
    """Pivot flat observations to the long ``id, t, <41 parameters>`` frame (means per bin).

    ``obs`` holds equal-length arrays ``id``, ``t`` (hours), ``minute`` (integer minutes),
    ``code`` (1..41) and ``value``.
    """
    # pop: the caller's dict must not keep the unfiltered arrays alive (memory)
    ids, t, code, value = obs.pop("id"), obs.pop("t"), obs.pop("code"), obs.pop("value")
    tkey = obs.pop("minute")
    if unknown_as_nan:
        known = ~(np.isin(code, _DESCRIPTOR_CODES) & (value == -1.0))
        ids, t, code, value, tkey = ids[known], t[known], code[known], value[known], tkey[known]
    if quantization is not None:
        tkey = np.round(t / quantization)  # paper: round(t / q) * q, half to even
        t = tkey * quantization
        tkey = tkey.astype(np.int64)
    n_par = len(PHYSIONET_PARAMETERS)
    if len(ids) == 0:
        return pd.DataFrame(
            {"id": np.empty(0, np.int64), "t": np.empty(0)}
            | {p: np.empty(0) for p in PHYSIONET_PARAMETERS}
        )
    # one integer sort key (stay rank, time bin, parameter); records are nearly sorted already
    uid, id_rank = np.unique(ids, return_inverse=True)
    tkey = tkey - tkey.min()
    span = int(tkey.max()) + 1
    if len(uid) * span * n_par < 2**62:
        order = np.argsort((id_rank * span + tkey) * n_par + (code - 1), kind="stable")
    else:  # pragma: no cover - absurdly fine quantization
        order = np.lexsort((code, tkey, id_rank))
    id_rank, tkey, t, code, value = id_rank[order], tkey[order], t[order], code[order], value[order]
    new_row = np.ones(len(order), dtype=bool)
    new_row[1:] = (id_rank[1:] != id_rank[:-1]) | (tkey[1:] != tkey[:-1])
    new_cell = new_row.copy()
    new_cell[1:] |= code[1:] != code[:-1]
    row = np.cumsum(new_row) - 1
    n_rows = int(row[-1]) + 1
    starts = np.flatnonzero(new_cell)
    sums = np.add.reduceat(value, starts)
    counts = np.diff(np.append(starts, len(value)))
    table = np.full((n_rows, n_par), np.nan)
    table[row[starts], code[starts] - 1] = sums / counts
    frame = pd.DataFrame(table, columns=list(PHYSIONET_PARAMETERS), copy=False)
    frame.insert(0, "t", t[new_row])
    frame.insert(0, "id", uid[id_rank[new_row]])
    if scaling is not None:
        frame = scale_physionet(frame, method=scaling)
    return frame


def _select_stays(
    records: list[_Record], n_stays: int | None, record_ids: Iterable[int] | None = None
) -> list[_Record]:
    records = sorted(records, key=lambda r: r.record_id)
    for a, b in zip(records[:-1], records[1:]):
        if a.record_id == b.record_id:
            raise ValueError(f"duplicate RecordID {a.record_id}: {a.name} and {b.name}")
    if record_ids is not None:
        wanted = {int(i) for i in record_ids}
        absent = sorted(wanted - {r.record_id for r in records})
        if absent:
            raise ValueError(
                f"{len(absent)} requested RecordID(s) not found in the chosen sets: {absent[:10]}"
            )
        records = [r for r in records if r.record_id in wanted]
    if n_stays is not None:
        if isinstance(n_stays, bool) or int(n_stays) != n_stays or n_stays < 1:
            raise ValueError(f"n_stays must be a positive integer or None, got {n_stays!r}")
        records = records[: int(n_stays)]
    return records


def _read_outcomes(blobs: list[tuple[str, bytes]], ids: np.ndarray) -> pd.DataFrame:
    frames = []
    for name, data in blobs:
        try:
            frame = pd.read_csv(io.BytesIO(data))
        except (pd.errors.ParserError, ValueError) as exc:
            raise ValueError(f"malformed PhysioNet outcomes file {name}: {exc}") from None
        expected = ["RecordID", *PHYSIONET_OUTCOMES]
        if list(frame.columns) != expected:
            raise ValueError(
                f"malformed PhysioNet outcomes file {name}, line 1: expected columns {expected}, "
                f"got {list(frame.columns)}"
            )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True).set_index("RecordID").sort_index()
    out = out[out.index.isin(ids)]
    out.index = out.index.astype(np.int64)
    return out


def _check_scaling(scaling: Scaling) -> None:
    if scaling not in (None, "minmax", "paper"):
        raise ValueError(f"scaling must be None, 'minmax' or 'paper', got {scaling!r}")


def load_physionet2012(
    path: str | os.PathLike[str],
    *,
    quantization: float | None = None,
    scaling: Scaling = None,
    sets: Sequence[str] = ("a", "b"),
    n_stays: int | None = None,
    record_ids: Iterable[int] | None = None,
    unknown_as_nan: bool = True,
    return_outcomes: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Load the PhysioNet 2012 challenge data as a long DataFrame.

    Parameters
    ----------
    path : str or path-like
        ``set-ab.tar.gz`` (any tar, compressed or not), a folder holding ``set-a/``,
        ``set-b/`` and ``Outcomes-*.txt``, or the folder holding the ``.tar.gz``.
    quantization : float, optional
        Bin width in hours (the paper uses 0.016). Times become ``round(t / q) * q`` and the
        values of a channel in one bin are averaged. ``None`` keeps the minute resolution
        (duplicates at the same minute are still averaged).
    scaling : {None, "minmax", "paper"}
        ``"minmax"``: ``(x - min) / (max - min)`` per feature, exactly ``[0, 1]``;
        ``"paper"``: the paper's ``(x - min) / max``. Min and max are taken over the loaded
        data (see :func:`physionet_minmax`).
    sets : str or sequence of str
        Which challenge sets to read, e.g. ``"a"`` for the labelled set-a only.
    n_stays : int, optional
        Keep only the ``n_stays`` stays with the smallest RecordIDs among the chosen sets
        (applied after ``record_ids``).
    record_ids : iterable of int, optional
        Load only these stays (all must exist in the chosen sets).
    unknown_as_nan : bool
        Treat ``-1`` in the descriptors Age, Gender, Height, ICUType and Weight as missing
        (default). ``False`` keeps them as observed values, as the paper's code does.
    return_outcomes : bool
        Also return the outcomes table of the loaded stays.

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``id`` (int64 RecordID), ``t`` (float hours since ICU admission) and the 41
        :data:`PHYSIONET_PARAMETERS` (float64, NaN where not measured). One row per
        ``(id, t)``, sorted by ``id`` then ``t``; no row is entirely NaN.
    outcomes : pandas.DataFrame
        Only with ``return_outcomes=True``: ``SAPS-I, SOFA, Length_of_stay, Survival,
        In-hospital_death`` indexed by ``RecordID`` (raw values, -1 as in the files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or outcomes are requested but an ``Outcomes-*.txt`` is
        missing.
    ValueError
        If ``path`` holds no PhysioNet data, a requested set is absent, or a record is
        malformed (the message names the file and the line number).

    Examples
    --------
    >>> df = load_physionet2012("set-ab.tar.gz", quantization=0.016)  # doctest: +SKIP
    """
    q = _check_quantization(quantization)
    _check_scaling(scaling)
    if isinstance(sets, str):
        sets = (sets,)
    wanted = {str(s) for s in sets}
    if not wanted:
        raise ValueError("sets must name at least one challenge set, e.g. ('a', 'b')")
    kind, root = _resolve_source(path)

    records: list[_Record] = []
    outcome_blobs: dict[str, tuple[str, bytes]] = {}
    for what, s, name, data in _iter_sources(kind, root, wanted):
        if what == "record":
            rid = int(re.search(r"(\d+)\.txt$", name).group(1))  # type: ignore[union-attr]
            records.append(_Record(name, s, rid, data))
        else:
            outcome_blobs[s] = (name, data)
    found = {r.set for r in records}
    if missing := sorted(wanted - found):
        raise ValueError(
            f"PhysioNet set(s) {missing} not found (no set-<x>/*.txt) in {str(root)!r}"
        )
    records = _select_stays(records, n_stays, record_ids)
    ids = np.array([r.record_id for r in records], dtype=np.int64)
    sets_loaded = sorted({r.set for r in records})

    obs = _parse_records(records)
    del records  # the raw bytes are no longer needed
    frame = _assemble(obs, q, unknown_as_nan, scaling)
    if not return_outcomes:
        return frame
    if absent := [s for s in sets_loaded if s not in outcome_blobs]:
        raise FileNotFoundError(
            f"Outcomes file(s) {[f'Outcomes-{s}.txt' for s in absent]} not found in {str(root)!r}"
        )
    outcomes = _read_outcomes([outcome_blobs[s] for s in sets_loaded], ids)
    return frame, outcomes


# --------------------------------------------------------------------------------------------
# Bundled sample
# --------------------------------------------------------------------------------------------
def _sample_bytes(name: str) -> bytes:
    return resources.files("latentode.datasets").joinpath("data", name).read_bytes()


def load_physionet_sample(
    n_stays: int | None = None,
    *,
    quantization: float | None = None,
    scaling: Scaling = None,
    unknown_as_nan: bool = True,
    return_outcomes: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Load the small PhysioNet 2012 subset shipped with latentode (no download, no archive).

    300 ICU stays of set-a (drawn with ``numpy.random.default_rng(2012)``, see
    ``datasets/make_physionet_subset.py``), 131,741 measurements (348,572 bytes, xz). The raw
    records are stored verbatim (``RecordID,Time,Parameter,Value``), so the result is exactly what
    :func:`load_physionet2012` returns for the same stays and options.

    Parameters
    ----------
    n_stays : int, optional
        Keep the ``n_stays`` stays with the smallest RecordIDs (at most 300).
    quantization : float, optional
        Bin width in hours, as in :func:`load_physionet2012`.
    scaling : {None, "minmax", "paper"}
        As in :func:`load_physionet2012`; the min and max come from the loaded stays.
    unknown_as_nan : bool
        As in :func:`load_physionet2012` (default ``True``).
    return_outcomes : bool
        As in :func:`load_physionet2012`.

    Returns
    -------
    frame : pandas.DataFrame
        ``id, t`` and the 41 :data:`PHYSIONET_PARAMETERS` (with 300 stays: 22,456 rows,
        131,367 observed values; 54 in-hospital deaths).
    outcomes : pandas.DataFrame
        Only with ``return_outcomes=True``; indexed by RecordID.
    """
    q = _check_quantization(quantization)
    _check_scaling(scaling)
    data = lzma.decompress(_sample_bytes(_SAMPLE_FILE))
    raw = pd.read_csv(io.BytesIO(data.replace(b":", b",")), header=None, skiprows=1,
                      names=["id", "h", "m", "param", "value"], dtype={"param": str})
    ids_all = np.unique(raw["id"].to_numpy(np.int64))
    if n_stays is not None:
        if isinstance(n_stays, bool) or int(n_stays) != n_stays or n_stays < 1:
            raise ValueError(f"n_stays must be a positive integer or None, got {n_stays!r}")
        ids_all = ids_all[: int(n_stays)]
        raw = raw[raw["id"].isin(ids_all)]
    code = _param_codes(raw["param"])
    keep = code > 0
    h, m = raw["h"].to_numpy(np.int64)[keep], raw["m"].to_numpy(np.int64)[keep]
    obs = {
        "id": raw["id"].to_numpy(np.int64)[keep],
        "t": h + m / 60.0,
        "minute": h * 60 + m,
        "code": code[keep],
        "value": raw["value"].to_numpy(np.float64)[keep],
    }
    frame = _assemble(obs, q, unknown_as_nan, scaling)
    if not return_outcomes:
        return frame
    outcomes = pd.read_csv(io.BytesIO(_sample_bytes(_SAMPLE_OUTCOMES_FILE)), index_col="RecordID")
    outcomes.index = outcomes.index.astype(np.int64)
    return frame, outcomes[outcomes.index.isin(ids_all)]


# --------------------------------------------------------------------------------------------
# Scaling and metric
# --------------------------------------------------------------------------------------------
def _feature_columns(df: pd.DataFrame, features: Sequence[str] | None) -> list[str]:
    if features is None:
        features = [c for c in PHYSIONET_PARAMETERS if c in df.columns]
        if not features:
            features = [c for c in df.columns if c not in ("id", "t")]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the frame")
    return list(features)


def physionet_minmax(
    df: pd.DataFrame, features: Sequence[str] | None = None
) -> tuple[pd.Series, pd.Series]:
    """Per-feature min and max over the observed (non-NaN) values, as the paper's scaling uses.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame, e.g. from :func:`load_physionet2012` (unscaled).
    features : sequence of str, optional
        Columns to use; default: the :data:`PHYSIONET_PARAMETERS` present in ``df``.

    Returns
    -------
    (min, max) : tuple of pandas.Series
        Indexed by feature; NaN for a feature with no observed value. These are the raw
        statistics (the paper's ``get_data_min_max``); the paper then divides by ``max`` with
        ``max == 0`` replaced by 1.
    """
    cols = _feature_columns(df, features)
    values = df[cols]
    return values.min(skipna=True), values.max(skipna=True)


def scale_physionet(
    df: pd.DataFrame,
    method: Literal["minmax", "paper"] = "minmax",
    *,
    minmax: tuple[pd.Series, pd.Series] | None = None,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Scale the feature columns of a long frame per feature.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame (unscaled).
    method : {"minmax", "paper"}
        ``"minmax"``: ``(x - min) / (max - min)`` (divisor 1 where ``max == min``), exactly
        ``[0, 1]`` on the data the statistics come from. ``"paper"``: ``(x - min) / max``
        (divisor 1 where ``max == 0``), the formula of the Latent ODE code.
    minmax : (min, max), optional
        Statistics to use (e.g. from the training data); default :func:`physionet_minmax` of
        ``df``.
    features : sequence of str, optional
        Columns to scale; default: the PhysioNet parameters present in ``df``.

    Returns
    -------
    pandas.DataFrame
        A copy with the feature columns scaled; NaN stays NaN, other columns untouched.
    """
    if method not in ("minmax", "paper"):
        raise ValueError(f"method must be 'minmax' or 'paper', got {method!r}")
    cols = _feature_columns(df, features)
    lo, hi = physionet_minmax(df, cols) if minmax is None else minmax
    lo = pd.Series(lo).reindex(cols).fillna(0.0)
    hi = pd.Series(hi).reindex(cols).fillna(1.0)
    div = (hi - lo) if method == "minmax" else hi.copy()
    div = div.where(div != 0, 1.0)
    out = df.copy()
    out[cols] = (df[cols] - lo) / div
    return out
