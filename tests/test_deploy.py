"""Deployment files: docker-compose.yml, Dockerfile and the Asterisk config snippets agree with
each other and with the Earpiece configuration they are shipped with."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from earpiece import doctor
from earpiece.agi.ami_permissions import REQUIRED_READ, REQUIRED_WRITE, parse_manager_conf
from earpiece.agi.fastagi import AgiRequest
from earpiece.agi.routing import make_handlers
from earpiece.config import load_settings
from earpiece.crm.postgres import parse_postgres_url

REPO = Path(__file__).resolve().parents[1]
AST = REPO / "config" / "asterisk"
ENV = {"EARPIECE_AMI_SECRET": "x", "EARPIECE_ARI_PASSWORD": "y", "EARPIECE_CRM_PASSWORD": "z"}

yaml = pytest.importorskip("yaml", reason="PyYAML not installed (it comes with ctranslate2)")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def asterisk_conf(name: str) -> list[tuple[str, str, str]]:
    """(category, key, value) of an Asterisk .conf file; ``#include`` lines as ('#', ...)."""
    out: list[tuple[str, str, str]] = []
    category = ""
    for raw in (AST / name).read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("#"):
            directive, _, arg = line.partition(" ")
            out.append((category, directive, arg.strip().strip('"')))
            continue
        m = re.fullmatch(r"\[([^\]]+)\](\(([^)]*)\))?", line)
        if m:
            category = m.group(1)
            if m.group(3) and m.group(3) != "!":
                out.append((category, "(template)", m.group(3)))
            continue
        m = re.fullmatch(r"([\w-]+)\s*=>?\s*(.*)", line)
        assert m, f"{name}: unparsable line {raw!r}"
        out.append((category, m.group(1), m.group(2).strip()))
    return out


def values(conf: list[tuple[str, str, str]], category: str, key: str) -> list[str]:
    return [v for c, k, v in conf if c == category and k == key]


def one(conf: list[tuple[str, str, str]], category: str, key: str) -> str:
    found = values(conf, category, key)
    assert len(found) == 1, (category, key, found)
    return found[0]


# --------------------------------------------------------------------------------------------
# docker-compose.yml and Dockerfile
# --------------------------------------------------------------------------------------------


def test_compose_services_images_and_command() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"asterisk", "earpiece", "postgres"}
    assert re.fullmatch(r"[\w./-]+/asterisk:22(\.\d+)*", services["asterisk"]["image"])
    assert services["postgres"]["image"] == "postgres:15"
    earpiece = services["earpiece"]
    assert earpiece["build"]["context"] == "."
    assert (REPO / earpiece["build"]["dockerfile"]).is_file()
    assert earpiece["command"] == ["earpiece", "run", "--config", "/etc/earpiece/earpiece.toml"]
    assert "./config/earpiece.docker.toml:/etc/earpiece/earpiece.toml:ro" in earpiece["volumes"]
    assert set(earpiece["depends_on"]) == {"asterisk", "postgres"}


def test_compose_mounts_exist_and_volumes_are_declared() -> None:
    data = compose()
    declared = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        for spec in service.get("volumes", []):
            source, target = spec.split(":")[:2]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{name}: {source} is not in the repository"
                if target.startswith("/etc/asterisk/"):
                    assert Path(source).name == Path(target).name
            else:
                assert source in declared, f"{name}: named volume {source} not declared"
    assert "pgdata:/var/lib/postgresql/data" in data["services"]["postgres"]["volumes"]


def test_compose_secrets_are_docker_secrets_not_plain_env() -> None:
    data = compose()
    declared = data["secrets"]
    for name, service in data["services"].items():
        for secret in service.get("secrets", []):
            assert secret in declared, f"{name} uses undeclared secret {secret}"
            assert declared[secret]["file"].startswith("./secrets/")
        env = service.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), key
    assert (REPO / ".gitignore").read_text().count("/secrets/") >= 1
    # Earpiece reads its secrets from files the earpiece service actually mounts.
    text = (REPO / "config" / "earpiece.docker.toml").read_text()
    mounted = set(data["services"]["earpiece"]["secrets"])
    for path in re.findall(r'_file = "/run/secrets/([^"]+)"', text):
        assert path in mounted
    # Asterisk includes its secret lines from files the asterisk service mounts.
    mounted = set(data["services"]["asterisk"]["secrets"])
    for conf in ("manager.conf", "ari.conf"):
        includes = [v for _, k, v in asterisk_conf(conf) if k in ("#include", "#tryinclude")]
        assert includes and all(Path(p).name in mounted for p in includes)


def test_docker_crm_is_the_compose_postgres_service() -> None:
    data = compose()
    settings = load_settings(REPO / "config" / "earpiece.docker.toml", ENV)
    target = parse_postgres_url(settings.crm.url)  # a postgresql:// URL without a password
    postgres = data["services"]["postgres"]
    env = postgres["environment"]
    assert target.host == "postgres" and target.port == 5432
    assert (target.user, target.database) == (env["POSTGRES_USER"], env["POSTGRES_DB"])
    health = " ".join(postgres["healthcheck"]["test"])
    assert f"-U {target.user}" in health and f"-d {target.database}" in health
    assert data["services"]["earpiece"]["depends_on"]["postgres"]["condition"] == \
        "service_healthy"
    # Earpiece logs in with the very secret file PostgreSQL initialised its password from.
    crm = tomllib.loads((REPO / "config" / "earpiece.docker.toml").read_text())["crm"]
    assert crm["password_file"] == env["POSTGRES_PASSWORD_FILE"]
    secret = Path(crm["password_file"]).name
    assert secret in postgres["secrets"] and secret in data["services"]["earpiece"]["secrets"]
    assert settings.crm.password.get() == "z"  # $EARPIECE_CRM_PASSWORD wins over the file


def test_compose_publishes_sip_and_rtp_only() -> None:
    data = compose()
    ports = [str(p) for p in data["services"]["asterisk"]["ports"]]
    assert not any(p.split(":")[0] in ("5038", "8088") for p in ports)  # AMI/ARI stay inside
    rtp = asterisk_conf("rtp.conf")
    start, end = one(rtp, "general", "rtpstart"), one(rtp, "general", "rtpend")
    assert f"{start}-{end}:{start}-{end}/udp" in ports
    assert "5060:5060/udp" in ports


def test_docker_compose_config_when_the_plugin_exists() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                             timeout=30, check=False)
    if version.returncode != 0:
        pytest.skip(f"docker compose plugin not available: {version.stderr.strip()[:100]}")
    result = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"),
                             "config", "-q"], capture_output=True, text=True, timeout=60,
                            check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.M)
    install = re.search(r"apt-get install[^\n]*", text)
    assert install and {"espeak-ng", "sox"} <= set(install.group(0).split())
    assert re.search(r"^RUN pip install \.$", text, re.M)
    assert 'CMD ["earpiece", "run", "--config", "/etc/earpiece/earpiece.toml"]' in text
    assert re.search(r"^USER earpiece$", text, re.M)  # not root
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "secrets", ".git"} <= set(ignored)


# --------------------------------------------------------------------------------------------
# Asterisk snippets agree with the Earpiece configuration and with the doctor's hints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["earpiece.example.toml", "earpiece.docker.toml"])
def test_manager_http_ari_match_the_settings(config: str) -> None:
    settings = load_settings(REPO / "config" / config, ENV)
    manager = asterisk_conf("manager.conf")
    assert one(manager, "general", "enabled") == "yes"
    assert int(one(manager, "general", "port")) == settings.ami.port
    user = settings.ami.username
    write = set(one(manager, user, "write").split(","))
    read = set(one(manager, user, "read").split(","))
    # least privilege: exactly the classes of earpiece.agi.ami_permissions, as the doctor says
    assert write == set(REQUIRED_WRITE) == set(doctor.AMI_WRITE_HINT.split(","))
    assert read == set(REQUIRED_READ) == set(doctor.AMI_READ_HINT.split(","))
    parsed = parse_manager_conf((AST / "manager.conf").read_text())[user]
    assert (parsed.read, parsed.write) == (REQUIRED_READ, REQUIRED_WRITE)
    assert values(manager, user, "permit") and one(manager, user, "deny") == "0.0.0.0/0.0.0.0"
    assert not values(manager, user, "secret")  # never committed

    http = asterisk_conf("http.conf")
    assert one(http, "general", "enabled") == "yes"
    assert f":{one(http, 'general', 'bindport')}" in settings.ari.url

    ari = asterisk_conf("ari.conf")
    assert one(ari, "general", "enabled") == "yes"
    assert one(ari, settings.ari.username, "type") == "user"
    assert one(ari, settings.ari.username, "read_only") == "no"
    assert not values(ari, settings.ari.username, "password")


def test_dialplan_hooks_reach_the_fastagi_handlers() -> None:
    settings = load_settings(REPO / "config" / "earpiece.docker.toml", ENV)
    ext = asterisk_conf("extensions.conf")
    # Outside docker Earpiece runs on the Asterisk host; docker-compose overrides the global
    # through the #tryinclude with its own file (the compose service name).
    assert one(ext, "globals", "EARPIECE_AGI") == f"agi://127.0.0.1:{settings.agi.port}"
    assert one(ext, "globals", "#tryinclude") == "earpiece-globals.conf"
    docker_globals = asterisk_conf("docker/earpiece-globals.conf")
    assert one(docker_globals, "", "EARPIECE_AGI") == f"agi://earpiece:{settings.agi.port}"
    mounts = compose()["services"]["asterisk"]["volumes"]
    assert ("./config/asterisk/docker/earpiece-globals.conf:/etc/asterisk/"
            "earpiece-globals.conf:ro") in mounts
    handlers = make_handlers(settings.agi, lambda u, c, t: None)
    scripts = set()
    calls = 0
    for _, _key, value in ext:
        # Substitute the dialplan functions first, then take the AGI() URL.
        concrete = re.sub(r"\$\{URIENCODE\(\$\{\w+(\(\w+\))?\}\)\}", "v", value)
        for arg in re.findall(r"AGI\(\$\{EARPIECE_AGI\}/([^,)]*)\)", concrete):
            assert "$" not in arg, f"unexpected dialplan expression in {arg!r}"
            request = AgiRequest.parse_script(arg)
            calls += 1
            assert request.script in handlers, arg
            scripts.add(request.script)
            if request.script == "route":
                assert request.param("direction") in ("inbound", "outbound")
    assert scripts == {"route", "tag"}
    assert calls == 4  # dialer tag, inbound route + tag, agents' outbound route
    # The dialer context originates the customer, tags, then Dial()s the agent.
    dialer = [v for c, k, v in ext if c == "dialer"]
    assert any("tag?campaign=" in v for v in dialer)
    assert any(v.startswith("n,Dial(") for v in dialer)
    # Stasis() uses the ARI app Earpiece subscribes to.
    assert any(f"Stasis({settings.ari.app}" in v for _, _, v in ext)


@pytest.mark.parametrize("config", ["earpiece.example.toml", "earpiece.docker.toml"])
def test_every_inbound_route_has_a_dialplan_extension(config: str) -> None:
    settings = load_settings(REPO / "config" / config, ENV)
    ext = asterisk_conf("extensions.conf")
    routes = {v.split(",", 1)[0] for c, k, v in ext if c == "routes" and k == "exten"}
    wanted = {settings.agi.default_route} | {
        r.route for r in settings.agi.routes if r.direction in ("inbound", "any")}
    assert wanted <= routes


def test_dialled_endpoints_exist_in_pjsip_conf() -> None:
    pjsip = asterisk_conf("pjsip.conf")
    endpoints = {c for c, k, v in pjsip if k == "(template)" and v == "endpoint-tpl"}
    assert {"agent1", "cust1", "cust2"} <= endpoints
    for _, _, value in asterisk_conf("extensions.conf"):
        for name in re.findall(r"PJSIP/([a-z]\w*)", value):
            assert name in endpoints, f"dialplan dials PJSIP/{name}, not defined in pjsip.conf"
    contexts = {c for c, _, _ in asterisk_conf("extensions.conf")}
    for _, key, value in pjsip:
        if key in ("context", "message_context"):
            assert value in contexts, f"pjsip.conf names context {value} not in extensions.conf"
