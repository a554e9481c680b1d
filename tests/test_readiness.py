"""The pure verdicts of preflight (b2bd.readiness): what a connector's refusal means for the live
checks, and One's release."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from b2bd.connectors.source import ConnectorError, FailureReason
from b2bd.readiness import Check, one_version_check, refused_checks
from tests.support.config_dir import ConfigDir


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("unreachable", ["reachable:fail", "manifest:skip", "services-manager:skip", "mis:skip",
                         "sims-version:skip"]),
        ("bad-data", ["reachable:pass", "manifest:fail", "services-manager:skip", "mis:skip",
                      "sims-version:skip"]),
        ("prerequisite", ["reachable:pass", "manifest:pass", "services-manager:fail", "mis:skip",
                          "sims-version:skip"]),
        ("internal", ["connector:fail"]),
        ("local", ["connector:fail"]),
    ],
)  # fmt: skip
def test_a_refusal_fails_its_check_after_passes_and_before_skips(
    reason: FailureReason, expected: list[str]
) -> None:
    checks = refused_checks(ConnectorError(reason, "said why"))
    assert [f"{c.name}:{c.status}" for c in checks] == expected
    (failed,) = [c for c in checks if c.failed]
    assert failed.reason == reason and failed.detail == "said why"


def test_one_version_check(tmp_path: Path) -> None:
    cfg = ConfigDir(tmp_path / "config")
    settings = cfg.load().settings
    assert settings is not None
    assert one_version_check(settings) == Check("one-version", "pass", "3.83")
    check = one_version_check(dataclasses.replace(settings, one_version="3.57"))
    assert check.failed and check.reason == "prerequisite" and "One 3.57 <" in check.detail
