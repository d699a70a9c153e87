from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    """Tests marked `data` need ../shared/data; they skip only where it is absent (CI has it)."""
    if DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{DATA} not present")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
