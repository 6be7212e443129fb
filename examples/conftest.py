"""The notebooks are executed by nbmake; like the docs' code blocks they run with ``-m docs``
(``.ci/run`` does so after the default run)."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.docs)
