"""No shipped model saw evaluation data: no FER+ test image, no TCCE test performer in any training set.

Each .json beside shipped weights carries `training_data` (see emocloak.data.provenance); these
tests read it. The record alone is checked everywhere; against the datasets where they are present.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from emocloak.data.provenance import TCCE_TEST_SUBJECTS, names_digest
from emocloak.recognizers.registry import WEIGHTS

CANDIDATES = Path(__file__).resolve().parents[1] / "models" / "candidates"  # kept, not yet shipped
RECORDS = sorted([*WEIGHTS.glob("*.json"), *CANDIDATES.glob("*.json")])


def _record(path: Path) -> dict:
    return json.loads(path.read_text())["training_data"]


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_every_shipped_file_says_what_it_was_trained_on(path):
    assert path.with_suffix(".pt").is_file()
    rec = _record(path)
    assert rec.get("ferplus") or rec.get("tcce"), "training_data names no data"
    if "ferplus" in rec:
        assert rec["ferplus"]["split"] == "train", "FER+ valid/test are for picking and scoring, never training"
    if "tcce" in rec:
        assert rec["tcce"]["split"] == "train"
        assert not set(rec["tcce"]["subjects"]) & set(TCCE_TEST_SUBJECTS)
        assert rec["tcce"]["images"], "TCCE photos must be listed"


@pytest.mark.data
def test_listed_data_holds_no_test_image_or_performer(data_dir):
    from emocloak.data.ferplus import split_names

    fer = {s: split_names(data_dir / "ferplus", s) for s in ("train", "test")}
    assert not set(fer["train"]) & set(fer["test"])
    with (data_dir / "tcce" / "manifest.csv").open(newline="") as f:
        split_of = {Path(r["path"]).name: (r["split"], r["subject"]) for r in csv.DictReader(f)}
    for path in RECORDS:
        rec = _record(path)
        if "ferplus" in rec:
            f = rec["ferplus"]
            assert (f["n"], f["names_sha256"]) == (len(fer["train"]), names_digest(fer["train"])), path.name
        for name in rec.get("tcce", {}).get("images", []):
            split, subject = split_of[name]
            assert split == "train" and subject not in TCCE_TEST_SUBJECTS, f"{path.name}: {name} is a test photo"
