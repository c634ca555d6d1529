"""The deploy recipes cannot drift from what `test_topology.py` runs: the compose file is what that test starts, and
the Dockerfile and the Helm recipe must give the same processes the same commands and variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sentry_port_assets_tests.test_topology import DEPLOY, SCRIPTS, compose

REPO = Path(__file__).resolve().parents[1]
PROCESSES = ("codeserver", "webserver", "daemon", "receiver")


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def receiver_manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "helm" / "receiver.yaml").read_text()) if d]


def secret_keys() -> set[str]:
    return set(yaml.safe_load((DEPLOY / "helm" / "secret.example.yaml").read_text())["stringData"])


def env_names(service: str) -> set[str]:
    return set(compose()["services"][service].get("environment") or {})


def test_compose_runs_the_processes_the_topology_test_starts() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", *PROCESSES}
    for name in PROCESSES:
        assert services[name]["command"][0] in SCRIPTS, f"{name}: the topology test cannot run {services[name]}"
    assert "-m" in services["codeserver"]["command"] and "sentry_port_assets" in services["codeserver"]["command"]
    # which process needs which variable: the secrets only where they are used
    assert {"SENTRY_TOKEN", "PORT_CLIENT_SECRET"} <= env_names("codeserver")
    assert env_names("receiver") == {"SENTRY_WEBHOOK_INBOX", "SENTRY_WEBHOOK_SECRET"}
    for name in ("webserver", "daemon"):
        assert env_names(name) == {"DAGSTER_HOME", "DAGSTER_POSTGRES_URL"}, name


def test_the_dockerfile_builds_what_compose_runs() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd and yaml.safe_load(cmd.group(1)) == compose()["services"]["codeserver"]["command"]
    assert "'.[postgres]'" in text and "deploy/dagster.yaml" in text and "deploy/workspace.yaml" in text
    assert "DAGSTER_HOME=/opt/dagster/home" in text


def test_the_instance_is_postgres_backed_with_the_queue_and_the_pool() -> None:
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    helm = helm_values()
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert "dagster instance concurrency set sentry_port_writes 1" in (DEPLOY / "helm" / "values.yaml").read_text()


def test_helm_runs_the_same_code_location_with_the_same_variables() -> None:
    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    command = compose()["services"]["codeserver"]["command"]
    assert deployment["dagsterApiGrpcArgs"] == command[command.index("-m"):command.index("-m") + 2]
    assert deployment["port"] == int(command[command.index("-p") + 1])
    names = {e["name"] for e in deployment["env"]} | secret_keys()
    wanted = {n for n in env_names("codeserver") if not n.startswith("DAGSTER_")}  # the chart sets the instance
    assert names - {"SENTRY_WEBHOOK_SECRET"} == wanted
    assert [s["name"] for s in deployment["envSecrets"]] == ["sentry-port-secrets"]


def test_the_receiver_manifest_runs_the_compose_receiver() -> None:
    deployment, service = receiver_manifests()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == compose()["services"]["receiver"]["command"]
    assert {e["name"] for e in container["env"]} == env_names("receiver")
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]} <= secret_keys()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert service["spec"]["ports"][0]["targetPort"] == 8000


def test_every_variable_a_recipe_sets_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    names = set().union(*(env_names(s) for s in PROCESSES)) | secret_keys()
    undocumented = sorted(n for n in names if f"`{n}`" not in readme)
    assert undocumented == []
