"""The per-photo estimate from held-out readers, and recognizers with a crop rule of their own."""

import numpy as np
import torch
from PIL import Image

from emocloak.metrics import held_out


def _reading(label: str | None) -> dict | None:
    return None if label is None else {"emotion": label, "probabilities": {}}


def test_a_face_counts_only_readers_that_read_it_before_and_is_weak_below_half():
    before = {"a": _reading("sadness"), "b": _reading("anger"), "c": None, "d": _reading("neutral")}
    after = {"a": _reading("happiness"), "b": _reading("anger"), "c": _reading("fear"), "d": None}
    face = held_out.face_estimate([0, 0, 9, 9], before, after)
    assert face["changed"] == {"a": True, "b": False, "c": None, "d": True}  # a lost face counts as changed
    assert (face["n_changed"], face["n_readers"], face["weak"]) == (2, 3, False)
    weak = held_out.face_estimate([0, 0, 9, 9], before, {**after, "a": _reading("sadness")})
    assert (weak["n_changed"], weak["weak"]) == (1, True)
    summary = held_out.summarise([face, weak], ["a", "b", "c", "d"], used=["cnn-w24"])
    assert summary["summary"] == (
        "protected against 2 of 3 held-out readers; protected against 1 of 3 held-out readers"
    )
    assert "face 2" in summary["warning"] and "face 1" not in summary["warning"]


def test_held_out_readers_are_the_shipped_ones_the_cloak_did_not_use():
    from emocloak.recognizers.registry import available, ensemble

    readers = held_out.held_out_readers(ensemble())
    assert readers and not set(readers) & set(ensemble())
    assert set(readers) | set(ensemble()) == set(available())
    assert held_out.relatives(readers, ensemble())["cnn"] == ["cnn-w24"]
    assert {"photo-tight", "photo-loose"} <= set(readers)  # the readers kept out on purpose
    assert held_out.relatives(readers, ensemble())["photo-loose"] == ["cnn-w24"]


def test_an_unchanged_photo_is_reported_as_unprotected():
    import emocloak
    from emocloak.attacks.evasion.universal import UniversalPerturbation

    img = np.asarray(Image.open(emocloak.sample_photo_path()).resize((256, 256)))
    nothing = UniversalPerturbation(torch.zeros(3, 8, 8), {"eps": 8, "recognizers": ["cnn-w24"]})
    cloaked, info = emocloak.protect(img, method="universal", perturbation=nothing)
    est = info["held_out"]
    assert np.array_equal(cloaked, img) and "cnn-w24" not in est["readers"]
    assert len(est["faces"]) == 1 and est["faces"][0]["n_changed"] == 0 and est["faces"][0]["n_readers"] >= 3
    assert est["warning"] and est["summary"].startswith("protected against 0 of")
    _, quiet = emocloak.protect(img, method="universal", perturbation=nothing, estimate=False)
    assert "held_out" not in quiet


def test_a_recognizer_trained_on_a_tighter_crop_reads_a_tighter_crop(tmp_path):
    import emocloak
    from emocloak.recognizers.facenet import FaceNet
    from emocloak.recognizers.registry import load_facenet
    from emocloak.training import save_weights

    photo = np.asarray(Image.open(emocloak.sample_photo_path()))
    net = FaceNet("resnet", width=4, in_ch=3)
    for margin, name in ((None, "default.pt"), (0.05, "tight.pt")):
        save_weights(net, tmp_path / name, {"config": {"width": 4}}, size=64, margin=margin)
    default, tight = (load_facenet(tmp_path / n) for n in ("default.pt", "tight.pt"))
    (_, box), (_, tight_box) = default.face_crop(photo), tight.face_crop(photo)
    assert tight_box.width < box.width
    assert round(tight_box.width * 1.35 / 1.05) in range(box.width - 2, box.width + 3)
