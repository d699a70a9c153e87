import numpy as np
import pytest
from PIL import Image

from emocloak.data.datasets import load_dataset, load_folder, load_kaggle_csv, load_manifest
from emocloak.data.ferplus import load_ferplus, majority
from emocloak.errors import DatasetError
from emocloak.labels import LABELS


def test_majority_drops_unknown_nf_and_empty():
    votes = np.array(
        [
            [6, 2, 0, 0, 0, 0, 0, 0, 2, 0],  # neutral
            [0, 0, 0, 0, 0, 0, 0, 4, 0, 0],  # contempt
            [1, 0, 0, 0, 0, 0, 0, 0, 5, 0],  # unknown wins -> dropped
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 9],  # not a face -> dropped
            [0] * 10,  # no votes -> dropped
        ],
        dtype=np.float32,
    )
    assert majority(votes).tolist() == [0, 7, -1, -1, -1]


def _fake_ferplus(root, rows):
    for split in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        (root / split).mkdir(parents=True)
    lines = ["Usage,Image name," + ",".join([*LABELS, "unknown", "NF"])]
    label_csv = []
    for i, (usage, votes) in enumerate(rows):
        name = f"fer{i:07d}.png"
        folder = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}[usage]
        Image.fromarray(np.full((48, 48), i * 10, np.uint8)).save(root / folder / name)
        lines.append(f"{usage},{name}," + ",".join(map(str, votes)))
        if usage == "Training":
            label_csv.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
    lines.append("Training,," + ",".join(["0"] * 10))  # FER+ lists removed images with no name
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    (root / "FER2013Train" / "label.csv").write_text("\n".join(label_csv) + "\n")


def test_ferplus_native_layout_both_label_sources(tmp_path):
    _fake_ferplus(
        tmp_path,
        [
            ("Training", [0, 8, 0, 0, 0, 0, 0, 0, 2, 0]),
            ("Training", [0, 0, 0, 0, 0, 0, 0, 0, 10, 0]),
            ("PrivateTest", [0, 0, 0, 5, 0, 0, 0, 0, 0, 0]),
        ],
    )
    for authority in ("fer2013new", "label.csv"):
        d = load_ferplus(tmp_path, "train", authority)
        assert len(d) == 1 and d.labels.tolist() == [1] and d.images.shape == (1, 48, 48)
        assert d.votes[0, 1] == pytest.approx(1.0)
    assert load_ferplus(tmp_path, "test").labels.tolist() == [3]
    assert isinstance(load_dataset(tmp_path, "test"), type(d))


def test_ferplus_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="FER2013Train"):
        load_ferplus(tmp_path, "train")
    with pytest.raises(DatasetError, match="valid: train, valid, test"):
        load_ferplus(tmp_path, "dev")
    (tmp_path / "FER2013Train").mkdir()
    (tmp_path / "FER2013Train" / "label.csv").write_text("a,b,c\n")
    with pytest.raises(DatasetError, match="12 columns"):
        load_ferplus(tmp_path, "train", "label.csv")


def test_kaggle_csv(tmp_path):
    px = " ".join(["128"] * 2304)
    p = tmp_path / "fer2013.csv"
    p.write_text(f"emotion,pixels,Usage\n3,{px},Training\n6,{px},PrivateTest\n0,{px},PrivateTest\n")
    d = load_kaggle_csv(p, "test")
    assert [LABELS[i] for i in d.labels] == ["neutral", "anger"]
    assert d.images.shape == (2, 48, 48) and d.images.dtype == np.uint8
    assert len(load_dataset(p, None)) == 3
    p.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="2304 pixels"):
        load_kaggle_csv(p)


def test_manifest_and_folder(tmp_path):
    (tmp_path / "img").mkdir()
    for n in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / f"{n}.jpg")
    m = tmp_path / "manifest.csv"
    m.write_text("path,label,subject,split\nimg/a.jpg,happy,01,train\nimg/b.jpg,surprise,02,test\n")
    d = load_manifest(m, "test")
    assert d.paths == [tmp_path / "img" / "b.jpg"] and d.labels.tolist() == [2] and d.subjects == ["02"]
    assert len(load_dataset(tmp_path, None)) == 2
    m.write_text("path,label\nimg/a.jpg,boredom\n")
    with pytest.raises(DatasetError, match="boredom"):
        load_manifest(m)
    m.write_text("path,label\nimg/zzz.jpg,happy\n")
    with pytest.raises(DatasetError, match="missing"):
        load_manifest(m)
    classes = tmp_path / "classes"
    (classes / "Angry").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(classes / "Angry" / "x.png")
    assert load_folder(classes).labels.tolist() == [4]
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_folder(tmp_path / "img")


def test_unrecognised_dataset_lists_layouts(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DatasetError, match="expected a FER\\+ folder"):
        load_dataset(tmp_path / "x.txt")


@pytest.mark.data
def test_real_ferplus_and_tcce_sizes(data_dir):
    test = load_ferplus(data_dir / "ferplus", "test")
    assert len(test) == 3546 and test.images.shape[1:] == (48, 48)
    tcce = load_dataset(data_dir / "tcce", "test")
    assert len(tcce) == 244 and 7 not in set(tcce.labels.tolist())  # no contempt in TCCE
