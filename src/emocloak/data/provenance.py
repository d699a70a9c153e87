"""What a shipped model was trained on, in a form a test can check for leakage.

Every `.json` beside shipped weights carries `training_data`: the FER+ splits used (with the
count and a digest of the exact image names) and the TCCE photos used (file names and their
performers). `tests/test_leakage.py` reads it: no FER+ test image and no TCCE test performer may
appear there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

# TCCE's split is by performer (see ../shared/data/README.md); these six are never trained on.
TCCE_TEST_SUBJECTS = ("03", "09", "14", "19", "24", "29")


def names_digest(names: Sequence[str]) -> str:
    """sha256 of the names in order, one a line: identifies an exact list without storing it."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def training_data(
    ferplus_split: str | None = None,
    ferplus_names: Sequence[str] = (),
    tcce_paths: Sequence[str | Path] = (),
    tcce_subjects: Sequence[str] = (),
    note: str = "",
) -> dict:
    """The `training_data` record of a model's .json.

    TCCE images are listed by file name with the set of their performers; FER+ images by split,
    count and digest (28k names would swell every .json).
    """
    rec: dict = {}
    if ferplus_split is not None:
        rec["ferplus"] = {
            "split": ferplus_split,
            "labels": "fer2013new.csv, majority protocol",
            "n": len(ferplus_names),
            "names_sha256": names_digest(ferplus_names),
        }
    if tcce_paths:
        leaked = sorted(set(tcce_subjects) & set(TCCE_TEST_SUBJECTS))
        if leaked:
            raise ValueError(f"TCCE test performers {leaked} in training data")
        rec["tcce"] = {
            "split": "train",
            "subjects": sorted(set(tcce_subjects)),
            "images": sorted(Path(p).name for p in tcce_paths),
        }
    if note:
        rec["note"] = note
    return rec
