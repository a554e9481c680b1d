"""Where a Wonde token is read from, and that it never shows itself."""

from __future__ import annotations

import os
import pickle

import pytest

from b2bd.config.model import CredentialSource
from b2bd.connectors.credentials import Secret, read_token
from b2bd.connectors.source import ConnectorError

TOKEN = "7e76896f9aca62569048c667db292d72dd84f224"


def refusal(*args, **kwargs) -> str:
    with pytest.raises(ConnectorError) as caught:
        read_token(*args, **kwargs)
    assert caught.value.reason == "auth"
    return caught.value.message


def test_systemd_credentials_directory_comes_first(tmp_path):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "wonde").write_text(TOKEN + "\n")
    (tmp_path / "file").write_text("from-the-file")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds"), "T": "from-env"}
    fallbacks = {"wonde": CredentialSource(path=tmp_path / "file")}
    assert read_token("wonde", fallbacks, environ).reveal() == TOKEN


def test_then_the_file_or_variable_b2bd_yaml_names(tmp_path):
    (tmp_path / "file").write_text("  from-the-file\r\n")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty"), "T": "from-env"}
    assert read_token("a", {"a": CredentialSource(path=tmp_path / "file")}, environ).reveal() == (
        "from-the-file"
    )
    assert read_token("b", {"b": CredentialSource(env="T")}, environ).reveal() == "from-env"


def test_missing_everywhere_says_where_it_looked(tmp_path):
    message = refusal("wonde", {}, {})
    assert message == (
        "credential wonde: not found: $CREDENTIALS_DIRECTORY is not set, "
        "and b2bd.yaml has no credentials.wonde"
    )
    assert "no " + str(tmp_path) in refusal("wonde", {}, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "B2BD_X, which is not set" in refusal("w", {"w": CredentialSource(env="B2BD_X")}, {})
    assert "does not exist" in refusal("w", {"w": CredentialSource(path=tmp_path / "no")}, {})


@pytest.mark.parametrize(
    "content",
    [b"", b"   \n", b"two words", b"line\nbreak", b"caf\xc3\xa9", b"x" * 5000, b"tab\there"],
)
def test_what_is_not_a_token_is_refused_without_quoting_it(tmp_path, content):
    (tmp_path / "wonde").write_bytes(content)
    message = refusal("wonde", {}, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    for word in (b"two", b"words", b"line", b"break", b"caf", b"xxxx", b"tab", b"here"):
        if word in content:
            assert word.decode() not in message.split(":", 1)[1].replace(str(tmp_path), "")


def test_a_fifo_or_a_folder_is_refused_never_waited_on(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("fifo", "dir"):
        message = refusal(name, {name: CredentialSource(path=tmp_path / name)}, {})
        assert "not a regular file" in message or "Is a directory" in message


def test_names_that_could_walk_out_of_the_credentials_directory_are_refused(tmp_path):
    for name in ("..", ".", "../etc/passwd", "a/b", ""):
        assert "is not a credential name" in refusal(name, {}, {"CREDENTIALS_DIRECTORY": "/"})


def test_a_secret_never_shows_itself():
    secret = Secret(TOKEN)
    assert TOKEN not in repr(secret) and TOKEN not in str(secret) and TOKEN not in f"{secret}"
    assert TOKEN not in repr([secret]) and TOKEN not in repr({"token": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret == Secret(TOKEN) and secret.reveal() == TOKEN
