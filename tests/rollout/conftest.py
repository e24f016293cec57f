"""The live-server fixture of ``tests/api`` is used here too."""

from tests.api.conftest import make_client

__all__ = ["make_client"]
