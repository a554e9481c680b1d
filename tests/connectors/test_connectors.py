from __future__ import annotations

import pytest

from b2bd.config.model import Endpoint
from b2bd.connectors.directory import DirectorySource
from b2bd.connectors.source import TRANSIENT, ConnectorError
from b2bd.connectors.table import SOURCES, open_source


def test_directory_endpoints_open_a_directory_source(tmp_path):
    source = open_source(Endpoint(type="directory", path=tmp_path), laestab="8814001")
    assert isinstance(source, DirectorySource)
    assert source.laestab == "8814001"
    assert "directory" in SOURCES


def test_unknown_endpoint_type_is_an_internal_error():
    with pytest.raises(ConnectorError) as caught:
        open_source(Endpoint(type="carrier-pigeon"))  # type: ignore[arg-type]  # on purpose
    assert caught.value.reason == "internal"


def test_only_unreachable_and_timeout_are_transient():
    assert {"unreachable", "timeout"} == TRANSIENT
    assert ConnectorError("timeout", "slow").transient
    assert not ConnectorError("bad-data", "broken").transient
