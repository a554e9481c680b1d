"""b2bd.yaml ``metrics: {listen: ...}``: off unless given, loopback unless a host is named, and
a bad address is one positioned problem with the rule id ``metrics-listen``."""

from __future__ import annotations

import pytest

from tests.support.config_dir import ConfigDir, b2bd_yaml

METRICS_LINE = 5  # b2bd_yaml() writes four lines; ``extra`` starts on the fifth


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ('"127.0.0.1:9464"', ("127.0.0.1", 9464)),
        ("9464", ("127.0.0.1", 9464)),
        ('"9464"', ("127.0.0.1", 9464)),
        ('"localhost:9100"', ("127.0.0.1", 9100)),
        ('"0.0.0.0:9464"', ("0.0.0.0", 9464)),
        ('"[::1]:9464"', ("::1", 9464)),
        ('"[::]:65535"', ("::", 65535)),
    ],
)
def test_a_listen_address_is_read_with_loopback_by_default(
    cfg: ConfigDir, listen: str, expected: tuple[str, int]
) -> None:
    cfg.write("b2bd.yaml", b2bd_yaml(extra=f"metrics: {{listen: {listen}}}\n"))
    config = cfg.load()
    assert config.problems == ()
    assert config.settings is not None
    assert config.settings.metrics_listen == expected


def test_metrics_are_off_unless_configured(cfg: ConfigDir) -> None:
    config = cfg.load()
    assert config.settings is not None
    assert config.settings.metrics_listen is None


@pytest.mark.parametrize(
    "listen",
    [
        '":9464"',  # every interface to some tools, loopback to others: say which
        '"127.0.0.1"',
        '"127.0.0.1:0"',
        '"127.0.0.1:65536"',
        '"127.0.0.1:http"',
        '"example.org:9464"',
        '"::1:9464"',
        '"[::1:9464"',
        '"[127.0.0.1]:9464"',
        '"127.0.0.1:9464 "',
        '"127.0.0.1:٩٤٦٤"',
        "0",
        "70000",
        "true",
        "[9464]",
        '""',
    ],
)
def test_a_bad_listen_address_is_a_metrics_listen_error_at_its_value(
    cfg: ConfigDir, listen: str
) -> None:
    cfg.write("b2bd.yaml", b2bd_yaml(extra=f"metrics: {{listen: {listen}}}\n"))
    config = cfg.load()
    found = [(p.file, p.line, p.column, p.rule, p.severity) for p in config.problems]
    assert found == [("b2bd.yaml", METRICS_LINE, 19, "metrics-listen", "error")]
    assert "HOST:PORT" in config.problems[0].message


def test_metrics_without_listen_is_an_error(cfg: ConfigDir) -> None:
    cfg.write("b2bd.yaml", b2bd_yaml(extra="metrics: {}\n"))
    config = cfg.load()
    assert [(p.line, p.rule) for p in config.problems] == [(METRICS_LINE, "schema")]
    assert "listen" in config.problems[0].message
