"""The end-to-end tests' repo (tests/e2e.py), built once per session and shared by the test
modules that drive it (test_pipeline, test_ray); each test leaves it as it found it."""

import pytest

from tests.e2e import make_repo


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("e2e"))
