"""Fixtures shared by the quality and performance suites."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reports_dir(pytestconfig: pytest.Config) -> Path:
    """``<rootdir>/reports``: where suites write plots."""
    return Path(str(pytestconfig.rootpath)) / "reports"
