"""Post-hoc logit adjustment: a class the model never picks gets its recall back, on the model itself."""

import numpy as np
import torch

from emocloak.calibration import MAIN, balance, fit_offsets, logits_of, recalls
from emocloak.data.ferplus import FaceSet
from emocloak.labels import LABELS, label_index
from emocloak.recognizers.facenet import FaceNet


def test_fit_offsets_lifts_a_starved_class_and_leaves_a_fine_model_alone():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(LABELS), 2000)
    logits = rng.normal(0, 1, (2000, len(LABELS))).astype(np.float32)
    logits[np.arange(2000), labels] += 3.0  # a good model...
    sad = label_index("sadness")
    logits[:, sad] -= 4.0  # ...that almost never says sad
    assert recalls(logits, labels)[sad] < 0.2
    off = fit_offsets(logits, labels, min_recall=0.6)
    r = recalls(logits, labels, off)
    assert r[MAIN].min() >= 0.6 and off[sad] > 2 and off[label_index("contempt")] == 0
    fine = logits + 4.0 * (np.arange(len(LABELS)) == sad)  # undo the starvation: nothing to fix
    assert not fit_offsets(fine, labels, min_recall=0.6).any()


def test_balance_moves_the_head_bias_so_the_model_reads_as_fitted():
    torch.manual_seed(0)
    model = FaceNet("vgg", width=4).eval()
    rng = np.random.default_rng(1)
    faces = FaceSet(rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), rng.integers(0, 8, 64), [], None)
    before = logits_of(model, faces)
    record = balance(model, faces, min_recall=0.3)
    after = logits_of(model, faces)
    offsets = np.array([record["offsets"][name] for name in LABELS], np.float32)
    np.testing.assert_allclose(after - before, np.broadcast_to(offsets, before.shape), atol=1e-3)
    assert record["valid_acc_after"] == float((after.argmax(1) == faces.labels).mean())
