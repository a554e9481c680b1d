"""Config for Wonde bases: credential fallbacks in b2bd.yaml, TLS settings on the endpoint, and
the two rules of their own (wonde-to-school, wonde-tls-unverified)."""

from __future__ import annotations

from pathlib import Path

from b2bd.config.model import CredentialSource
from tests.support.config_dir import BASES, SETTINGS, TASK, ConfigDir

WONDE = """\
  - id: "8816006"
    name: Wonde School
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [sec]
    endpoint: {ENDPOINT}
"""
ENDPOINT = "{type: wonde, school_id: A8816006, token: {credential: wonde}}"
TO_SCHOOL = """\
id: t
direction: to-school
bases: BASES
data: {type: changed}
cohort: {group: ncy, ncy: [7]}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
"""


def with_wonde(cfg: ConfigDir, endpoint: str = ENDPOINT) -> None:
    cfg.write("bases.yaml", BASES + WONDE.replace("{ENDPOINT}", endpoint))


def problems(cfg: ConfigDir, rule: str) -> list[tuple[str, int, int, str]]:
    return [(p.file, p.line, p.column, p.severity) for p in cfg.load().problems if p.rule == rule]


def test_credential_fallbacks_are_a_path_or_an_environment_variable(cfg: ConfigDir) -> None:
    cfg.write(
        "b2bd.yaml",
        SETTINGS + "credentials:\n  wonde: {path: secrets/wonde}\n  other: {env: OTHER_TOKEN}\n",
    )
    config = cfg.load()
    assert config.valid, config.problems
    assert config.settings is not None
    assert config.settings.credentials == {
        "wonde": CredentialSource(path=(cfg.root / "secrets/wonde").resolve()),
        "other": CredentialSource(env="OTHER_TOKEN"),
    }


def test_a_token_itself_or_both_sources_are_refused(cfg: ConfigDir) -> None:
    for bad in (
        "credentials:\n  wonde: {token: 7e76896f9aca62569048c667db292d72dd84f224}\n",
        "credentials:\n  wonde: {path: a, env: B}\n",
        "credentials:\n  wonde: {}\n",
        "credentials:\n  .hidden: {env: B}\n",
        "credentials:\n  wonde: {env: 7e76896f 9aca}\n",
    ):
        cfg.write("b2bd.yaml", SETTINGS + bad)
        config = cfg.load()
        assert not config.valid, bad
        for problem in config.problems:
            assert "7e76896f" not in problem.message  # a misplaced token is never echoed


def test_tls_verification_off_or_plain_http_is_warned_about(cfg: ConfigDir) -> None:
    with_wonde(cfg, ENDPOINT[:-1] + ", tls_verify: false}")
    found = problems(cfg, "wonde-tls-unverified")
    lines = (cfg.root / "bases.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "tls_verify" in text)
    assert found == [("bases.yaml", line, lines[line - 1].index("false") + 1, "warning")]
    assert cfg.load().valid
    with_wonde(cfg, ENDPOINT[:-1] + ', url: "http://wonde.example.org/v1.0/"}')
    assert [f[3] for f in problems(cfg, "wonde-tls-unverified")] == ["warning"]
    for quiet in (
        ENDPOINT,
        ENDPOINT[:-1] + ', url: "https://wonde.example.org/v1.0/", ca_bundle: ca.pem}',
        ENDPOINT[:-1] + ', url: "http://127.0.0.1:8099/v1.0/"}',
        ENDPOINT[:-1] + ', url: "http://[::1]:8099/v1.0/"}',
        ENDPOINT[:-1] + ', url: "http://localhost:8099/v1.0/"}',
    ):
        with_wonde(cfg, quiet)
        assert problems(cfg, "wonde-tls-unverified") == [], quiet


def test_ca_bundle_resolves_against_the_config_dir(cfg: ConfigDir) -> None:
    with_wonde(cfg, ENDPOINT[:-1] + ", ca_bundle: pki/ca.pem}")
    endpoint = cfg.load().bases["8816006"].endpoint
    assert endpoint.ca_bundle == (cfg.root / "pki/ca.pem").resolve()
    assert endpoint.tls_verify is True and endpoint.token_credential == "wonde"


def test_to_school_is_refused_for_a_wonde_base_named_by_id(cfg: ConfigDir) -> None:
    with_wonde(cfg)
    cfg.write("tasks/t.yaml", TO_SCHOOL.replace("BASES", '{ids: ["8816006"]}'))
    assert problems(cfg, "wonde-to-school") == [("tasks/t.yaml", 3, 15, "error")]
    cfg.write("tasks/t.yaml", TO_SCHOOL.replace("BASES", '{ids: ["8814001"]}'))
    config = cfg.load()
    assert config.valid and problems(cfg, "wonde-to-school") == []


def test_to_school_by_tag_excludes_wonde_bases_with_a_warning(cfg: ConfigDir) -> None:
    with_wonde(cfg)
    cfg.write("tasks/t.yaml", TO_SCHOOL.replace("BASES", "{tags: [sec]}"))
    config = cfg.load()
    assert [p.severity for p in config.problems if p.rule == "wonde-to-school"] == ["warning"]
    assert "8816006" not in config.tasks["t"].targets
    assert "8814001" in config.tasks["t"].targets


def test_from_school_tasks_reach_wonde_bases(cfg: ConfigDir) -> None:
    with_wonde(cfg)
    cfg.write("tasks/t.yaml", TASK.replace('["8814001"]', '["8814001", "8816006"]'))
    config = cfg.load()
    assert config.valid and config.tasks["t"].targets == ("8814001", "8816006")


def test_the_example_config_names_its_credential_fallback(tmp_path: Path) -> None:
    from b2bd.config.load import load_config

    settings = load_config(Path(__file__).resolve().parents[2] / "config").settings
    assert settings is not None and settings.credentials["wonde"].env == "B2BD_WONDE_TOKEN"
