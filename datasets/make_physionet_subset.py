"""Build the PhysioNet 2012 subset shipped in ``latentode/datasets/data/``.

Reads the challenge archive (``set-ab.tar.gz``: ``set-a/``, ``set-b/``, ``Outcomes-*.txt``),
draws ``--n-stays`` RecordIDs of set-a with ``numpy.random.default_rng(--seed)`` (choice
without replacement from the sorted set-a RecordIDs) and writes

* ``physionet2012_sample.csv.xz``: header ``RecordID,Time,Parameter,Value``, then every line of
  the chosen record files verbatim (file header dropped, RecordID prepended), stays in
  ascending RecordID order, lines in file order; xz (LZMA preset 9e, no timestamp, so the
  output is byte-for-byte reproducible);
* ``physionet2012_sample_outcomes.csv``: the chosen stays' rows of ``Outcomes-a.txt``.

Usage (from the repository root)::

    .venv/bin/python datasets/make_physionet_subset.py \\
        --archive /work/shared/data/physionet2012/set-ab.tar.gz \\
        --out latentode/datasets/data --n-stays 300 --seed 2012
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import tarfile
from pathlib import Path

import numpy as np

RECORD_RE = re.compile(r"(?:^|/)set-a/(\d+)\.txt$")
OUTCOMES_RE = re.compile(r"(?:^|/)Outcomes-a\.txt$")
HEADER = b"Time,Parameter,Value"


def read_set_a(archive: Path) -> tuple[dict[int, bytes], bytes]:
    """Return ``{RecordID: file bytes}`` of set-a and the bytes of ``Outcomes-a.txt``."""
    records: dict[int, bytes] = {}
    outcomes = b""
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            m = RECORD_RE.search(member.name)
            if m is None and not OUTCOMES_RE.search(member.name):
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            if m is not None:
                records[int(m.group(1))] = fh.read()
            else:
                outcomes = fh.read()
    if not records or not outcomes:
        raise ValueError(f"{archive} holds no set-a records or no Outcomes-a.txt")
    return records, outcomes


def build(archive: Path, out: Path, n_stays: int, seed: int) -> dict[str, int]:
    """Write the subset files into ``out``; return their sizes in bytes."""
    records, outcomes = read_set_a(archive)
    all_ids = np.array(sorted(records), dtype=np.int64)
    chosen = np.sort(np.random.default_rng(seed).choice(all_ids, size=n_stays, replace=False))

    lines = [b"RecordID," + HEADER]
    for rid in chosen.tolist():
        body = records[rid].splitlines()
        if body[0].strip() != HEADER:
            raise ValueError(f"set-a/{rid}.txt: unexpected header {body[0]!r}")
        lines.extend(b"%d,%s" % (rid, line) for line in body[1:] if line.strip())
    data = b"\n".join(lines) + b"\n"

    out_lines = outcomes.splitlines()
    keep = {str(r).encode() for r in chosen.tolist()}
    outcome_rows = [out_lines[0]] + [ln for ln in out_lines[1:] if ln.split(b",")[0] in keep]
    if len(outcome_rows) != n_stays + 1:
        raise ValueError("some chosen stays have no row in Outcomes-a.txt")

    out.mkdir(parents=True, exist_ok=True)
    sample = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    (out / "physionet2012_sample.csv.xz").write_bytes(sample)
    (out / "physionet2012_sample_outcomes.csv").write_bytes(b"\n".join(outcome_rows) + b"\n")
    return {
        "stays": n_stays,
        "measurement_lines": len(lines) - 1,
        "uncompressed_bytes": len(data),
        "physionet2012_sample.csv.xz": len(sample),
        "physionet2012_sample_outcomes.csv": (out / "physionet2012_sample_outcomes.csv")
        .stat()
        .st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive", type=Path, default=Path("/work/shared/data/physionet2012/set-ab.tar.gz")
    )
    parser.add_argument("--out", type=Path, default=Path("latentode/datasets/data"))
    parser.add_argument("--n-stays", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2012)
    args = parser.parse_args()
    sizes = build(args.archive, args.out, args.n_stays, args.seed)
    for key, val in sizes.items():
        print(f"{key}: {val:,}")
    for name in ("physionet2012_sample.csv.xz", "physionet2012_sample_outcomes.csv"):
        digest = hashlib.sha256((args.out / name).read_bytes()).hexdigest()
        print(f"sha256 {name}: {digest}")


if __name__ == "__main__":
    main()
