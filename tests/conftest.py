from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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


def _run_cli(*args: str) -> SimpleNamespace:
    """Run the CLI in-process (no torch import per call); an escaping exception is a bug, so re-raise it."""
    from typer.testing import CliRunner

    from emocloak.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


@pytest.fixture
def cli():
    return _run_cli


@pytest.fixture(scope="module")
def one_thread():
    """Batches in some modules are tiny: one thread is faster, and two stall on an oversubscribed machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
