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
