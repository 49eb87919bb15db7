"""The TOML settings loader (earpiece/config.py), the shipped configuration files and Secret."""

from __future__ import annotations

import copy
import dataclasses
import logging
import pickle
import re
import tomllib
import typing
from pathlib import Path

import pytest

from earpiece.agi.settings import RouteRule
from earpiece.config import Settings, load_settings
from earpiece.errors import ConfigError
from earpiece.secret import Secret

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "earpiece.example.toml"
DOCKER = REPO / "config" / "earpiece.docker.toml"


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None,
              name: str = "earpiece.toml") -> Settings:
    path = tmp_path / name
    path.write_text(text)
    return load_settings(path, env or {})


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, env)
    return info.value


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a settings dataclass tree (list items as ``section.key``)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            out += all_keys(item, f"{prefix}{f.name}.")
        elif dataclasses.is_dataclass(hint):
            out += all_keys(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            out.append(prefix + f.name)
    return out


# --------------------------------------------------------------------------------------------
# Shipped files
# --------------------------------------------------------------------------------------------


def test_example_file_loads_with_no_secrets_in_it() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings.ami.port == 5038 and settings.ari.app == "assist"
    assert settings.agi.routes[0] == RouteRule(route="vip", direction="inbound",
                                               callerid_prefix="+86138", queue="vip")
    assert settings.agi.routes[2].trunk == "trunk-cn"
    assert not settings.ami.secret and not settings.ari.password  # only env / *_file


def test_example_file_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    missing = []
    for key in all_keys(Settings):
        *sections, name = key.split(".")
        tables: list[typing.Any] = [data]
        for section in sections:
            nxt: list[typing.Any] = []
            for table in tables:
                sub = table.get(section, {})
                nxt += sub if isinstance(sub, list) else [sub]
            tables = nxt
        in_a_table = any(name in table for table in tables)
        # Secrets and optional list-item keys are documented in comments ("# secret_file = ..",
        # "#   exten_prefix   ...").
        commented = re.search(rf"^#\s*{re.escape(name)}(_file)?\b", text, re.M)
        if not in_a_table and not commented:
            missing.append(key)
    assert not missing, f"config/earpiece.example.toml does not document: {missing}"
    # Every setting of a section has an explanation on its line or just above it (the keys of
    # [[agi.routes]] items are explained in the comment block before them).
    lines = text.splitlines()
    header = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            header = line
        elif re.match(r"^\w+ = ", line) and not header.startswith("[["):
            assert "#" in line or lines[i - 1].startswith(("#", "[")), \
                f"undocumented setting in {header}: {line!r}"


def test_example_values_equal_defaults_except_routes() -> None:
    settings = load_settings(EXAMPLE, {})
    defaults = load_settings(None, {})
    assert dataclasses.replace(settings, agi=dataclasses.replace(settings.agi, routes=[])) \
        == defaults


def test_docker_config_loads_with_docker_secrets(tmp_path: Path) -> None:
    env = {"EARPIECE_AMI_SECRET": "a", "EARPIECE_ARI_PASSWORD": "b", "EARPIECE_CRM_PASSWORD": "c"}
    settings = load_settings(DOCKER, env)
    assert (settings.ami.host, settings.ari.url) == ("asterisk", "http://asterisk:8088")
    assert settings.agi.host == "0.0.0.0" and settings.agi.port == 4573
    assert settings.ami.secret.get() == "a"
    # Without the env variables the docker secret files are required, and named when missing.
    with pytest.raises(ConfigError) as info:
        load_settings(DOCKER, {})
    assert info.value.key == "ami.secret_file"
    assert "/run/secrets/ami_secret" in str(info.value)


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.agi.port == 4573


# --------------------------------------------------------------------------------------------
# Errors name the key and the file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[amii]\nport = 1\n", "amii", "unknown key"),
        ("[ami]\nportt = 5038\n", "ami.portt", "unknown key (known: action_timeout_s"),
        ("[media.vad]\nagressiveness = 2\n", "media.vad.agressiveness", "unknown key"),
        ("[ami]\nport = \"5038\"\n", "ami.port", "expected an integer, got '5038'"),
        ("[ami]\nport = 5038.0\n", "ami.port", "expected an integer"),
        ("[ami]\nport = true\n", "ami.port", "expected an integer, got True"),
        ("[ami]\nconnect_timeout_s = \"5\"\n", "ami.connect_timeout_s", "expected a number"),
        ("[ari]\nsubscribe_all = 1\n", "ari.subscribe_all", "expected true/false, got 1"),
        ("[ari]\nurl = 8088\n", "ari.url", "expected a string"),
        ("[recordings]\ndirectory = 1\n", "recordings.directory", "expected a path string"),
        ("[media]\nformat = \"opus\"\n", "media.format",
         "must be one of 'ulaw', 'alaw', 'slin16', got 'opus'"),
        ("[log]\nlevel = \"debug\"\n", "log.level", "must be one of"),
        ("ami = 5\n", "ami", "expected a table"),
        ("[media]\nrtp_port_min = 50000\nrtp_port_max = 40000\n", "media",
         "rtp_port_min must not exceed rtp_port_max"),
        ("[media.vad]\naggressiveness = 7\n", "media.vad", "0..3"),
        ("[agi]\nroutes = { route = \"x\" }\n", "agi.routes", "expected a list, got dict"),
        ("[[agi.routes]]\nroute = \"a\"\n[[agi.routes]]\nroute = \"b\"\nexten = \"1\"\n",
         "agi.routes[1].exten", "unknown key"),
        ("[[agi.routes]]\nroute = \"a\"\n[[agi.routes]]\nroute = 5\n",
         "agi.routes[1].route", "expected a string"),
        ("[[agi.routes]]\ndirection = \"inbound\"\n", "agi.routes[0]", "route"),
        ("[agi]\nroutes = [1]\n", "agi.routes[0]", "expected a table"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    err = error_of(tmp_path, text)
    assert err.key == key
    assert err.file == str(tmp_path / "earpiece.toml")
    assert fragment in str(err)
    assert str(err).startswith(f"{tmp_path / 'earpiece.toml'}: {key}: ")


def test_invalid_toml_missing_and_unreadable_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[ami\nport = 1\n")
    assert "invalid TOML" in str(err) and err.file == str(tmp_path / "earpiece.toml")
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_settings(tmp_path, {})  # a directory
    assert info.value.file == str(tmp_path)


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def test_secrets_from_environment(tmp_path: Path) -> None:
    settings = load_text(tmp_path, "[ami]\nusername = \"u\"\n",
                         {"EARPIECE_AMI_SECRET": "ami-pw", "EARPIECE_ARI_PASSWORD": "ari-pw"})
    assert settings.ami.secret.get() == "ami-pw"
    assert settings.ari.password.get() == "ari-pw"


def test_secrets_from_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "ami").write_text("from-file\n")
    (tmp_path / "ari").write_text("  ari-from-file  \n")
    text = "[ami]\nsecret_file = \"s/ami\"\n[ari]\npassword_file = \"%s\"\n" % (tmp_path / "ari")
    settings = load_text(tmp_path, text)
    assert settings.ami.secret.get() == "from-file"  # trailing newline stripped
    assert settings.ari.password.get() == "ari-from-file"
    # The environment wins over the file.
    settings = load_text(tmp_path, text, {"EARPIECE_AMI_SECRET": "env"})
    assert settings.ami.secret.get() == "env"


def test_secret_file_errors(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[ami]\nsecret_file = \"missing\"\n")
    assert err.key == "ami.secret_file"
    assert str(tmp_path / "missing") in str(err) and "No such file" in str(err)
    err = error_of(tmp_path, "[ami]\nsecret_file = 5\n")
    assert err.key == "ami.secret_file" and "expected a file path string" in str(err)


@pytest.mark.parametrize("env", [{}, {"EARPIECE_AMI_SECRET": "x", "EARPIECE_ARI_PASSWORD": "y"}])
def test_inline_secrets_are_refused_and_not_echoed(tmp_path: Path, env: dict[str, str]) -> None:
    err = error_of(tmp_path, "[ami]\nsecret = \"hunter2-inline\"\n", env)
    assert err.key == "ami.secret"
    assert "not accepted inline" in str(err) and "$EARPIECE_AMI_SECRET" in str(err)
    assert "secret_file" in str(err)
    assert "hunter2-inline" not in str(err)
    err = error_of(tmp_path, "[ari]\npassword = \"hunter3-inline\"\n", env)
    assert err.key == "ari.password" and "$EARPIECE_ARI_PASSWORD" in str(err)
    assert "hunter3-inline" not in str(err)


def test_secret_never_in_repr_str_or_logs(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    value = "Tr0ub4dor&3-secret"
    settings = load_text(tmp_path, "", {"EARPIECE_AMI_SECRET": value,
                                        "EARPIECE_ARI_PASSWORD": value})
    assert value not in repr(settings) and value not in str(settings)
    assert value not in repr(settings.ami) and value not in f"{settings.ami.secret}"
    assert value not in repr(dataclasses.asdict(settings))
    assert value not in repr(copy.deepcopy(settings))
    log = logging.getLogger("earpiece.test_config")
    with caplog.at_level(logging.DEBUG):
        log.info("settings: %s", settings)
        log.info("ami: %r secret=%s", settings.ami, settings.ami.secret)
        log.info("secret as arg", extra={"secret": settings.ami.secret})
    assert value not in caplog.text
    assert "********" in caplog.text
    assert settings.ami.secret.get() == value


def test_secret_value_semantics() -> None:
    a, b = Secret("x"), Secret("x")
    assert a == b and hash(a) == hash(b) and a != Secret("y") and a != "x"
    assert bool(a) and not Secret("")
    assert str(a) == repr(a) == "Secret('********')"
    assert not hasattr(a, "__dict__")
    assert pickle.loads(pickle.dumps(a)).get() == "x"
