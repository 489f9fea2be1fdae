import sys
from pathlib import Path

import pytest

from galleria.commands.build import build

sys.path.insert(0, str(Path(__file__).parent))  # lets test modules share fixtures' data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """The repository's own site.yaml, built once for every test that needs it (~40 s, warm cache)."""
    return build(REPO / "site.yaml", tmp_path_factory.mktemp("default") / "site", quiet=True)


@pytest.fixture(scope="session")
def default_site(default_build) -> Path:
    """The default gallery's output folder."""
    return Path(default_build.output)
