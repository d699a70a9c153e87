import pytest

from emocloak import LABELS
from emocloak.labels import canonical, label_index


def test_canonical_order_is_ferplus():
    assert LABELS == ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("Happy", "happiness"),
        ("angry", "anger"),
        (" sad ", "sadness"),
        ("surprised", "surprise"),
        ("contempt", "contempt"),
    ],
)
def test_aliases_map_by_name(name, want):
    assert canonical(name) == want
    assert LABELS[label_index(name)] == want


def test_unknown_label_lists_valid_ones():
    with pytest.raises(ValueError, match="valid labels: neutral, happiness"):
        canonical("boredom")


def test_recall_counts_unread_faces_as_misses():
    import numpy as np

    from emocloak.metrics.classification import per_class_recall

    r = per_class_recall(np.array([0, 0, 1, 1]), np.array([0, -1, 1, 1]))  # one neutral face unread
    assert r["neutral"] == 0.5 and r["happiness"] == 1.0 and r["contempt"] is None
