import pytest
# submitit configures logging when first imported (logging.config.dictConfig), which closes
# every handler that exists then, absl's among them: imported after JAX, that closed the
# stream pytest captures stderr with. The harness imports it before JAX; so do the tests.
import submitit  # noqa: F401

from harness import jaxcache
from harness.allocator import keep_freed_memory

keep_freed_memory()  # as the harness's processes do (harness/allocator.py)

# Tests build the same agents many times over: compile each program once per machine.
jaxcache.enable()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One dataset directory for the whole session, so datasets are generated once."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(autouse=True)
def _isolated_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("MOTO_HARNESS_DATA", str(data_dir))
    yield
