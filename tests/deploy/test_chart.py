"""The Helm chart renders, lints, keeps every pod within the restricted Pod Security Standard,
rejects wrong values with readable messages, and ships the CRD from crds/ unchanged."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, LOCAL_VALUES, REPO, helm_binary, pod_specs, render

# Every template path: each must render something with some values (no dead templates).
WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="module")
def local_docs(helm: str) -> list[dict[str, Any]]:
    return render(helm, values=[LOCAL_VALUES])


@pytest.fixture(scope="module")
def everything_docs(helm: str) -> list[dict[str, Any]]:
    """Every optional part switched on, so each template is checked."""
    return render(
        helm,
        set_values=[
            "evaluator.enabled=true",
            "router.autoscaling.enabled=true",
            "router.ingress.enabled=true",
            "recommender.autoscaling.enabled=true",
            "networkPolicy.enabled=true",
            "prometheus.persistence.enabled=true",
        ],
    )


def _names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


@pytest.mark.parametrize("values", [[], [LOCAL_VALUES]], ids=["default", "local"])
def test_lint_is_clean(helm: str, values: list[Path]) -> None:
    args = [helm, "lint", "--strict", str(CHART)]
    for path in values:
        args += ["-f", str(path)]
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_install_renders_the_whole_stack(default_docs: list[dict[str, Any]]) -> None:
    names = _names(default_docs)
    fullname = "rel-movierec"
    for kind, name in [
        ("Deployment", f"{fullname}-operator"),
        ("Role", f"{fullname}-operator"),
        ("RoleBinding", f"{fullname}-operator"),
        ("ServiceAccount", f"{fullname}-operator"),
        ("Deployment", f"{fullname}-router"),
        ("Service", f"{fullname}-router"),
        ("RecommenderModel", fullname),
        ("CronJob", f"{fullname}-ingest"),
        ("CronJob", f"{fullname}-retrain"),
        ("Job", f"{fullname}-bootstrap-1"),
        ("StatefulSet", f"{fullname}-postgresql"),
        ("StatefulSet", f"{fullname}-kafka"),
        ("Deployment", f"{fullname}-mlflow"),
        ("PersistentVolumeClaim", f"{fullname}-mlflow-artifacts"),
        ("Deployment", f"{fullname}-prometheus"),
        ("Deployment", f"{fullname}-alertmanager"),
        ("Deployment", f"{fullname}-pushgateway"),
        ("Deployment", f"{fullname}-grafana"),
        ("Deployment", f"{fullname}-evaluator"),
        ("PodDisruptionBudget", f"{fullname}-router"),
        ("Pod", f"{fullname}-test-router"),
    ]:
        assert (kind, name) in names, f"{kind} {name} missing"
    router_svc = next(
        d
        for d in default_docs
        if d["kind"] == "Service" and d["metadata"]["name"].endswith("-router")
    )
    assert router_svc["spec"]["ports"][0]["port"] == 8082


def _env(doc: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in pod_specs(doc)[0]["containers"][0]["env"]}


def _workload(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def test_served_answers_reach_the_store_for_the_evaluator(
    default_docs: list[dict[str, Any]], helm: str
) -> None:
    """The operator's recommender pods send provenance to Kafka, the ingestor stores that topic
    beside the event log, and the evaluator runs: the operator's default analysis has data."""
    ingest = pod_specs(_workload(default_docs, "CronJob", "-ingest"))[0]["containers"][0]
    source = ingest["command"][ingest["command"].index("--source") + 1]
    assert source == "kafka://rel-movierec-kafka.ns.svc:9092/movielog,recommendations"
    env = _env(_workload(default_docs, "Deployment", "-operator"))
    assert env["MOVIEREC_OPERATOR_SERVING_KAFKA_BOOTSTRAP"] == "rel-movierec-kafka.ns.svc:9092"
    assert env["MOVIEREC_OPERATOR_SERVING_PROVENANCE_TOPIC"] == "recommendations"

    off = render(helm, set_values=["ingestor.provenanceTopic="])
    ingest = pod_specs(_workload(off, "CronJob", "-ingest"))[0]["containers"][0]
    assert ingest["command"][ingest["command"].index("--source") + 1].endswith("/movielog")
    assert "MOVIEREC_OPERATOR_SERVING_KAFKA_BOOTSTRAP" not in _env(
        _workload(off, "Deployment", "-operator")
    )


def test_ingestor_switches_to_a_continuous_deployment(helm: str) -> None:
    docs = render(helm, set_values=["ingestor.mode=continuous", "ingestor.replicas=3"])
    kinds = _names(docs)
    assert ("CronJob", "rel-movierec-ingest") not in kinds
    dep = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("ingestor")
    )
    assert dep["spec"]["replicas"] == 3
    args = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--group" in args and "--until-caught-up" not in args


def test_each_component_switches_off(helm: str) -> None:
    docs = render(
        helm,
        set_values=[
            "postgresql.enabled=false",
            "externalDatabase.existingSecret=db",
            "kafka.enabled=false",
            "externalKafka.bootstrapServers=kafka.example:9092",
            "mlflow.enabled=false",
            "externalMlflow.trackingUri=http://mlflow.example",
            "prometheus.enabled=false",
            "externalPrometheus.url=http://prom.example:9090",
            "alertmanager.enabled=false",
            "pushgateway.enabled=false",
            "grafana.enabled=false",
            "retrain.enabled=false",
            "ingestor.enabled=false",
            "bootstrap.enabled=false",
            "evaluator.enabled=false",
        ],
    )
    components = {
        d["metadata"]["labels"].get("app.kubernetes.io/component")
        for d in docs
        if d["kind"] in WORKLOADS
    }
    assert components == {"operator", "router", "test", "cleanup"}
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("operator")
    )
    env = {e["name"]: e.get("value") for e in pod_specs(operator)[0]["containers"][0]["env"]}
    assert env["MOVIEREC_OPERATOR_MLFLOW_TRACKING_URI"] == "http://mlflow.example"
    assert env["MOVIEREC_OPERATOR_PROMETHEUS_URL"] == "http://prom.example:9090"


def _restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What the restricted Pod Security Standard (v1.34) would refuse in one pod spec."""
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(field)
    for volume in spec.get("volumes") or []:
        allowed = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected"}
        kinds = set(volume) - {"name"}
        if not kinds <= allowed:
            problems.append(f"volume {volume['name']}: {kinds - allowed}")
    if (pod_sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod seccompProfile")
    for c in (spec.get("initContainers") or []) + spec["containers"]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop")
        if set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities.add")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            problems.append(f"{name}: numeric non-zero runAsUser")
        # beyond the standard, what the chart promises: read-only root with a writable /tmp
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem")
        if "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts") or []}:
            problems.append(f"{name}: no /tmp emptyDir")
        if c.get("ports") and "resources" not in c:
            problems.append(f"{name}: no resources")
    return problems


@pytest.mark.parametrize("which", ["everything_docs", "local_docs"])
def test_every_pod_satisfies_restricted_pod_security(
    which: str, request: pytest.FixtureRequest
) -> None:
    docs = request.getfixturevalue(which)
    checked = 0
    for doc in docs:
        for spec in pod_specs(doc):
            checked += 1
            assert not _restricted_violations(spec), (doc["kind"], doc["metadata"]["name"])
    assert checked >= 12


def test_service_account_tokens_only_where_the_api_is_used(
    everything_docs: list[dict[str, Any]],
) -> None:
    with_token = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]
        for doc in everything_docs
        for spec in pod_specs(doc)
        if spec.get("automountServiceAccountToken") is not False
    }
    assert with_token == {"operator", "prometheus", "cleanup"}


def test_http_servers_sleep_before_stopping(everything_docs: list[dict[str, Any]]) -> None:
    for doc in everything_docs:
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in {"router", "mlflow", "prometheus", "grafana"}:
            continue
        for spec in pod_specs(doc):
            pre_stop = spec["containers"][0]["lifecycle"]["preStop"]
            assert pre_stop["sleep"]["seconds"] >= 1, doc["metadata"]["name"]


def test_probes_and_resources_on_long_running_pods(everything_docs: list[dict[str, Any]]) -> None:
    for doc in everything_docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in pod_specs(doc)[0]["containers"]:
            assert "readinessProbe" in container, doc["metadata"]["name"]
            assert "livenessProbe" in container, doc["metadata"]["name"]
            assert container["resources"]["requests"], doc["metadata"]["name"]


def test_standard_labels_everywhere(everything_docs: list[dict[str, Any]]) -> None:
    required = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/component",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/managed-by",
    }
    for doc in everything_docs:
        labels = doc["metadata"].get("labels") or {}
        assert required <= labels.keys(), (doc["kind"], doc["metadata"]["name"])
        assert labels["app.kubernetes.io/instance"] == "rel"


def test_any_release_name_and_namespace(helm: str) -> None:
    docs = render(helm, release="shop-movierec-prod", namespace="team-b")
    for doc in docs:
        name = doc["metadata"]["name"]
        assert name.startswith("shop-movierec-prod"), name
        assert doc["metadata"].get("namespace") in (None, "team-b")
        assert len(name) <= 63
    binding = next(
        d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("operator")
    )
    assert binding["subjects"][0]["namespace"] == "team-b"
    text = yaml.safe_dump_all(docs)
    assert "rel-movierec" not in text and "namespace: movierec" not in text
    # Kafka advertises the Service name in the release namespace
    kafka = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("kafka")
    )
    assert "shop-movierec-prod-kafka.team-b.svc:9092" in kafka["data"]["server.properties"]


def test_mlflow_accepts_its_service_names(default_docs: list[dict[str, Any]]) -> None:
    mlflow = next(
        d
        for d in default_docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("mlflow")
    )
    command = pod_specs(mlflow)[0]["containers"][0]["command"]
    assert command[:2] == ["mlflow", "server"]
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    for host in (
        "rel-movierec-mlflow",
        "rel-movierec-mlflow:5000",
        "rel-movierec-mlflow.ns.svc:5000",
    ):
        assert host in hosts


def test_local_values_fit_a_two_core_node(local_docs: list[dict[str, Any]]) -> None:
    cpu_millis = 0
    for doc in local_docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        replicas = doc["spec"].get("replicas", 1)
        for c in pod_specs(doc)[0]["containers"]:
            request = str(c["resources"]["requests"]["cpu"])
            cpu_millis += replicas * (
                int(request[:-1]) if request.endswith("m") else int(request) * 1000
            )
            assert c["image"].startswith("movierec.local/"), c["image"]
    assert cpu_millis <= 1000, f"{cpu_millis}m CPU requested on a 2-core node shared with tests"
    mlflow = next(
        d
        for d in local_docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("mlflow")
    )
    command = pod_specs(mlflow)[0]["containers"][0]["command"]
    assert command[command.index("--workers") + 1] == "1"
    assert not any(d["metadata"]["name"].endswith("-grafana") for d in local_docs)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["ingestor.mode=sometimes"], "ingestor/mode"),
        (["router.replicas=two"], "router/replicas"),
        (["operator.replicas=2"], "operator/replicas"),
        (["kafka.partitions=0"], "kafka/partitions"),
        (["recommenderModel.rollout.interval=soon"], "recommenderModel/rollout/interval"),
        (["podSecurityContext.runAsNonRoot=false"], "podSecurityContext/runAsNonRoot"),
        (["postgresql.enabled=false"], "externalDatabase"),
        (["routr.replicas=1"], "routr"),
    ],
)
def test_schema_rejects_wrong_values_with_a_readable_message(
    helm: str, values: list[str], message: str
) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render(helm, set_values=values)
    stderr = failed.value.stderr
    assert "values don't meet the specifications of the schema" in stderr, stderr
    assert message in stderr, stderr


def test_template_checks_say_what_to_set(helm: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render(helm, set_values=["recommenderModel.version=7"])
    assert "set exactly one of followAlias and version" in failed.value.stderr


def test_chart_crd_is_the_one_in_crds() -> None:
    ours = (CHART / "crds" / "recommendermodels.movierec.io.yaml").read_bytes()
    assert ours == (REPO / "crds" / "recommendermodels.movierec.io.yaml").read_bytes()
    assert list((CHART / "crds").iterdir()) == [
        CHART / "crds" / "recommendermodels.movierec.io.yaml"
    ]


def test_values_schema_takes_every_field_of_an_analysis_check() -> None:
    """recommenderModel.analysis is copied into the RecommenderModel: the values schema must
    let through every field the CRD's check has (and no other)."""
    import json

    crd = yaml.safe_load((REPO / "crds" / "recommendermodels.movierec.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    crd_fields = set(spec["properties"]["analysis"]["items"]["properties"])
    schema = json.loads((CHART / "values.schema.json").read_text())
    rm = schema["properties"]["recommenderModel"]["properties"]["analysis"]["items"]
    assert set(rm["properties"]) == crd_fields


def test_dashboards_and_rules_come_from_files(helm: str) -> None:
    docs = render(helm)
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("prometheus")
    )
    rules = sorted(p.name for p in (CHART / "files" / "rules").glob("*.yaml"))
    assert sorted(k for k in config["data"] if k != "prometheus.yml") == rules
    dashboards = next(d for d in docs if d["metadata"]["name"] == "rel-movierec-grafana-dashboards")
    expected = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert sorted((dashboards.get("data") or {}).keys()) == expected


def test_rendered_manifests_pass_server_side_validation(
    helm: str, kube: Any, local_docs: list[dict[str, Any]]
) -> None:
    """The API server (with the CRD installed) accepts every rendered object."""
    crd = REPO / "crds" / "recommendermodels.movierec.io.yaml"
    kube.kubectl("apply", "--server-side", "-f", str(crd))
    docs = render(helm, values=[LOCAL_VALUES], namespace=kube.namespace)
    manifest = yaml.safe_dump_all(docs)
    kube.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)


@pytest.fixture(scope="module")
def prom_tools() -> Any:
    from harness import promstack

    return promstack.ensure_installed()


def test_prometheus_configuration_is_valid(
    prom_tools: Any, local_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """With the local (file_sd) discovery: the harness's promtool is Debian's, which has no
    kubernetes_sd_configs; the rules and everything else are the same in both."""
    config = next(
        d
        for d in local_docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("prometheus")
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    for key, text in config["data"].items():
        (tmp_path / key if key == "prometheus.yml" else rules / key).write_text(text)
    # the pod mounts the rules at /etc/prometheus/rules; here they sit next to the config
    main = (tmp_path / "prometheus.yml").read_text().replace("/etc/prometheus/rules", str(rules))
    main = main.replace("/etc/prometheus/sd", str(tmp_path))
    (tmp_path / "prometheus.yml").write_text(main)
    done = subprocess.run(
        [str(prom_tools.promtool), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_configuration_is_valid(
    prom_tools: Any, default_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    secret = next(
        d
        for d in default_docs
        if d["kind"] == "Secret" and d["metadata"]["name"].endswith("alertmanager")
    )
    config = tmp_path / "alertmanager.yml"
    config.write_text(secret["stringData"]["alertmanager.yml"])
    done = subprocess.run(
        [str(prom_tools.amtool), "check-config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


_MAP_VALUES = {
    "resources", "nodeSelector", "affinity", "podAnnotations", "annotations", "commonLabels",
    "seccompProfile", "capabilities",
}  # fmt: skip


def _value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in _MAP_VALUES:
            yield from _value_paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_values_table_lists_every_value() -> None:
    table = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [path for path in _value_paths(values) if f"| `{path}` |" not in table]
    assert not missing, f"charts/movierec/README.md does not list: {missing}"


def test_only_generated_secrets_differ_between_renders(helm: str) -> None:
    """A pod template must not hash a generated password: the first upgrade (when lookup finds
    the stored one) would restart that pod, and PostgreSQL on an emptyDir would lose its data."""

    def stable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in docs if d["kind"] != "Secret"]

    assert stable(render(helm)) == stable(render(helm))
