"""deploy/: the Kustomize base and the example overlay (DESIGN section 10), rendered by kubectl as
`kubectl apply -k deploy/overlays/example` would, validated offline against the Kubernetes
schemas, and checked for what b2bd needs: one pod per shard with its ordinal as the shard index,
b2bd.service's hardening, liveness on /livez and readiness on /healthz, a config that b2bd
itself finds valid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from b2bd.config.load import load_config
from b2bd.shard import Shard

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLE = DEPLOY / "overlays" / "example"
# The oldest Kubernetes with the pod-index label on by default (1.28), and the newest known.
VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: the deploy/ manifests cannot be rendered")
    return found


def render(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(EXAMPLE)


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


@pytest.fixture(scope="module")
def pod(rendered) -> dict[str, Any]:
    spec: dict[str, Any] = one(rendered, "StatefulSet")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod) -> dict[str, Any]:
    (found,) = pod["containers"]
    return dict(found)


@pytest.fixture(scope="module")
def config_data(rendered) -> dict[str, str]:
    return dict(one(rendered, "ConfigMap", "b2bd-config")["data"])


@pytest.fixture(scope="module")
def settings(config_data) -> dict[str, Any]:
    return dict(yaml.safe_load(config_data["b2bd.yaml"]))


def test_the_overlay_has_what_a_deployment_needs(rendered) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == [
        ("ConfigMap", "b2bd-config"),
        ("Namespace", "b2bd-example"),
        ("NetworkPolicy", "b2bd"),
        ("PersistentVolumeClaim", "b2b-schools"),
        ("Service", "b2bd"),
        ("StatefulSet", "b2bd"),
    ]
    assert {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"} == {
        "b2bd-example"
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, version) -> None:
    for obj in [*rendered, *render(DEPLOY / "base")]:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_does_reject_a_broken_object(rendered) -> None:
    broken = {**one(rendered, "StatefulSet"), "spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_one_pod_per_shard_and_its_ordinal_is_the_shard_index(rendered, container, settings):
    statefulset = one(rendered, "StatefulSet")
    assert statefulset["spec"]["replicas"] == settings["shard"]["of"] == 2
    assert settings["shard"]["index"] == {"env": "B2BD_SHARD_INDEX"}
    env = {e["name"]: e for e in container["env"]}
    assert env["B2BD_SHARD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    # Each pod its own journal: the state volume comes from a claim template.
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert claims == {"state", "spool"}


def test_the_security_context_is_the_systemd_hardening(pod, container) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False  # NoNewPrivileges=yes
    assert sc["readOnlyRootFilesystem"] is True  # ProtectSystem=strict
    assert sc["capabilities"] == {"drop": ["ALL"]}  # CapabilityBoundingSet=
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}  # SystemCallFilter=
    assert sc["privileged"] is False
    # The image's numeric USER (Containerfile), so runAsNonRoot holds without guessing.
    user = re.search(r"^USER ([0-9]+):([0-9]+)$", (REPO / "Containerfile").read_text(), re.M)
    assert user is not None
    assert (sc["runAsUser"], sc["runAsGroup"]) == (int(user[1]), int(user[2])) != (0, 0)
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (
        int(user[1]),
        int(user[2]),
    )


def test_the_namespace_enforces_the_restricted_pod_security_standard(rendered) -> None:
    labels = one(rendered, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_and_scraping_use_healthz_and_metrics_on_the_metrics_port(
    rendered, pod, container, settings
) -> None:
    (port,) = [p for p in container["ports"] if p["name"] == "metrics"]
    host, _, number = settings["metrics"]["listen"].rpartition(":")
    assert (host, int(number)) == ("0.0.0.0", port["containerPort"]) == ("0.0.0.0", 9464)
    # A full or read-only journal disk makes /healthz 503: the pod is taken out of service
    # (readiness) but not restarted, since a restart cannot free the disk and a daemon started
    # on it cannot journal daemon-started (a crash loop). Only a stuck loop (/livez) restarts it.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/livez", "port": "metrics"}, probe
    annotations = one(rendered, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9464",
        "prometheus.io/path": "/metrics",
    }
    service = one(rendered, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    policy = one(rendered, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    # The pod's grace outlasts the daemon's own (run --grace, 600 s by default).
    assert pod["terminationGracePeriodSeconds"] > 600


def test_b2bd_writes_only_to_mounted_volumes(container, settings, config_data) -> None:
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert mounts["/etc/b2bd"]["readOnly"] is True
    assert "state_dir" not in settings  # the default, /var/lib/b2bd
    env = {e["name"]: e.get("value") for e in container["env"]}
    for needed in ("/var/lib/b2bd", settings["la_store"]["path"], env["RUNTIME_DIRECTORY"]):
        assert needed in writable, needed
    # Every school's folder too (to-school tasks write their inbound/).
    bases = yaml.safe_load(config_data["bases.yaml"])["bases"]
    for base in bases:
        path = base["endpoint"]["path"]
        assert any(path.startswith(m + "/") for m in writable), path


def mounted_config(pod: dict[str, Any], rendered, into: Path) -> Path:
    """The config dir as the kubelet lays it out at /etc/b2bd: each item's key at its path."""
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    data = one(rendered, "ConfigMap", volume["configMap"]["name"])["data"]
    items = volume["configMap"]["items"]
    assert sorted(i["key"] for i in items) == sorted(data), "a ConfigMap key is not mounted"
    for item in items:
        target = into / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    return into


def test_every_task_file_is_in_the_config_map_and_mounted_under_tasks(pod, rendered, tmp_path):
    config = mounted_config(pod, rendered, tmp_path / "etc-b2bd")
    ours = sorted(p.name for p in (EXAMPLE / "config" / "tasks").iterdir())
    assert sorted(p.name for p in (config / "tasks").iterdir()) == ours
    assert sorted(p.name for p in config.iterdir()) == ["b2bd.yaml", "bases.yaml", "tasks"]


@pytest.mark.parametrize("index", ["0", "1"])
def test_the_deployed_config_is_valid_for_each_pod(pod, rendered, tmp_path, index) -> None:
    config = mounted_config(pod, rendered, tmp_path / "etc-b2bd")
    loaded = load_config(config, environ={"B2BD_SHARD_INDEX": index})
    errors = [p for p in loaded.problems if p.severity == "error"]
    assert errors == []
    assert loaded.settings is not None
    assert loaded.settings.shard == Shard(int(index), 2)
    assert loaded.settings.la_store.path == Path("/var/spool/b2bd")


def normalised(text: str) -> str:
    """A config file without its editor schema line and with the example's school paths as the
    container sees them."""
    lines = [line for line in text.splitlines() if "yaml-language-server" not in line]
    lines = [line for line in lines if "The endpoints" not in line]
    return "\n".join(lines).replace("../examples/schools/", "/srv/b2b/schools/")


def test_the_overlay_config_is_the_repository_example(tmp_path) -> None:
    """One example, two layouts: the overlay's tasks and bases are config/'s, with the
    container's paths (a task added to config/ must be added to the overlay too)."""
    ours = EXAMPLE / "config"
    theirs = REPO / "config"
    assert sorted(os.listdir(ours / "tasks")) == sorted(os.listdir(theirs / "tasks"))
    for name in [f"tasks/{n}" for n in os.listdir(theirs / "tasks")] + ["bases.yaml"]:
        assert normalised((ours / name).read_text()) == normalised((theirs / name).read_text())


def with_component(name: str, into: Path) -> list[dict[str, Any]]:
    """The example overlay with one of deploy/components added, as an LA's overlay adds it."""
    there = os.path.relpath(DEPLOY, into)
    (into / "kustomization.yaml").write_text(
        f"resources: [{there}/overlays/example]\ncomponents: [{there}/components/{name}]\n"
    )
    return render(into)


def test_the_git_sync_component_feeds_the_config_dir_from_git(tmp_path) -> None:
    objects = with_component("git-sync", tmp_path)
    for obj in objects:
        kubernetes_validate.validate(obj, "1.29.0", strict=True)  # native sidecars: 1.29
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert "--root=/git" in sidecar["args"] and "--link=current" in sidecar["args"]
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/", "port": 8099}
    assert "--http-bind=:8099" in sidecar["args"]
    sc = sidecar["securityContext"]
    assert (sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"]) == (True, False)
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    # b2bd may read what git-sync writes: group = the pod's fsGroup, git-sync --group-write.
    assert sc["runAsGroup"] == pod["securityContext"]["fsGroup"]
    (b2bd,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in b2bd["env"]}
    mounts = {m["mountPath"]: m for m in b2bd["volumeMounts"]}
    assert env["B2BD_CONFIG"] == "/git/current"
    assert mounts["/git"]["readOnly"] is True and mounts["/git"]["name"] == "git"


def test_the_servicemonitor_component_scrapes_the_metrics_port(rendered, tmp_path) -> None:
    objects = with_component("servicemonitor", tmp_path)
    monitor = one(objects, "ServiceMonitor")
    service = one(rendered, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
