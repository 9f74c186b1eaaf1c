"""Checks of deploy/k8s: every overlay renders with `kubectl kustomize`; built-in objects
validate against the Kubernetes schemas (kubernetes-validate, strict, oldest and newest
supported versions); KEDA objects against KEDA's documented fields (keda.py); and what the
schemas cannot see: references between objects, secrets only by reference, grace period vs
drain timeout, probes, metrics, GPU scheduling, the queue KEDA watches, and the commands run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import yaml

import cli
import dockerfiles
import keda
import workspace
from report import Report, require

# Kubernetes versions the rendered objects must be valid for: the oldest still widely run
# (and the oldest current KEDA supports) and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
NAMESPACE = "dispr"
WORKER = "dispr-worker"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_CRED_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


def render(path: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    require(out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_k8s(obj: dict) -> list[str]:
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = "/".join(map(str, err.path)) or "(top)"
            problems.append(f"k8s {version}: {where}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"k8s {version}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
    return problems


def label(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def pod_specs(obj: dict) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod template metadata, pod spec) of every workload object."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        tpl = spec.get("template") or {}
    elif kind == "ScaledJob":
        tpl = (spec.get("jobTargetRef") or {}).get("template") or {}
    elif kind == "CronJob":
        tpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    else:
        return
    yield label(obj), tpl.get("metadata") or {}, tpl.get("spec") or {}


def containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def config_data(objs: list[dict]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data") or {} for o in find(objs, "ConfigMap")}


def container_env(
    c: dict, configs: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """Names (and, for ConfigMaps, values) of the variables a container gets."""
    env: dict[str, str] = {}
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            env.update(configs.get(src["configMapRef"]["name"], {}))
        if "secretRef" in src:
            env.update({k: "<secret>" for k in secrets.get(src["secretRef"]["name"], {})})
    for e in c.get("env") or []:
        env[e["name"]] = e.get("value", "<ref>")
    return env


def load_secret_examples(path: Path) -> dict[str, dict[str, str]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return {d["metadata"]["name"]: {**(d.get("stringData") or {}), **(d.get("data") or {})} for d in docs}


def check_overlay(
    report: Report,
    root: Path,
    path: Path,
    secrets: dict[str, dict[str, str]],
    queues: dict[str, str],
    invocations: list[cli.Invocation],
) -> None:
    rel = path.relative_to(root)
    gpu = "gpu" in path.name
    state: dict[str, Any] = {}

    def renders() -> None:
        state["objs"] = render(path)
        require(bool(state["objs"]), f"{rel} renders to nothing")

    if not report.check(f"{rel}: kubectl kustomize renders", renders):
        return
    objs: list[dict] = state["objs"]
    configs = config_data(objs)
    workers = [
        o for o in objs if o.get("kind") in ("Deployment", "ScaledJob") and o["metadata"]["name"] == WORKER
    ]

    def schemas() -> None:
        problems = [
            f"{label(o)}: {p}"
            for o in objs
            if o.get("apiVersion") != keda.API_VERSION
            for p in validate_k8s(o)
        ]
        require(not problems, "\n     ".join(problems))

    def keda_fields() -> None:
        problems = [
            f"{label(o)}: {p}"
            for o in objs
            if o.get("apiVersion", "").startswith("keda.sh/")
            for p in keda.validate(o, validate_k8s)
        ]
        require(not problems, "\n     ".join(problems))

    def namespaced() -> None:
        for o in objs:
            if o["kind"] == "Namespace":
                continue
            ns = o["metadata"].get("namespace")
            require(
                path.name == "base" or ns == NAMESPACE,
                f"{label(o)} is in namespace {ns!r}, expected {NAMESPACE}",
            )

    def secrets_by_reference() -> None:
        require(
            not find(objs, "Secret"),
            f"{rel} renders Secret objects; credentials must be created in the cluster",
        )
        for where, _, pod in (p for o in objs for p in pod_specs(o)):
            for c in containers(pod):
                for e in c.get("env") or []:
                    value = str(e.get("value", ""))
                    require(
                        not _CRED_URL.search(value),
                        f"{where} {c['name']}: {e['name']} has credentials in a literal URL",
                    )
                    require(
                        not re.search(r"PASS|SECRET|TOKEN|ACCESS_KEY", e["name"]) or "valueFrom" in e,
                        f"{where} {c['name']}: {e['name']} must come from a Secret (valueFrom)",
                    )
        for name, data in configs.items():
            for k, v in data.items():
                require(not _CRED_URL.search(str(v)), f"ConfigMap/{name}: {k} holds credentials in a URL")

    def references() -> None:
        auths = {o["metadata"]["name"]: o for o in find(objs, "TriggerAuthentication")}
        for where, _, pod in (p for o in objs for p in pod_specs(o)):
            for c in containers(pod):
                for src in c.get("envFrom") or []:
                    if "configMapRef" in src:
                        require(
                            src["configMapRef"]["name"] in configs,
                            f"{where}: no ConfigMap {src['configMapRef']['name']}",
                        )
                    if "secretRef" in src:
                        require(
                            src["secretRef"]["name"] in secrets,
                            f"{where}: Secret {src['secretRef']['name']} is not in secrets.example.yaml",
                        )
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        require(
                            ref["key"] in secrets.get(ref["name"], {}),
                            f"{where}: {e['name']} reads Secret {ref['name']} key {ref['key']}, not in secrets.example.yaml",
                        )
                env = container_env(c, configs, secrets)
                for arg in (c.get("args") or []) + (c.get("command") or []):
                    for var in _VAR_REF.findall(str(arg)):
                        require(
                            var in env,
                            f"{where} {c['name']}: $({var}) in its arguments is not in its environment",
                        )
        for o in find(objs, "ScaledObject"):
            target = o["spec"]["scaleTargetRef"]
            require(
                bool(find(objs, target.get("kind", "Deployment"), target["name"])),
                f"{label(o)} scales {target.get('kind', 'Deployment')}/{target['name']}, which is not rendered",
            )
        for o in find(objs, "ScaledObject") + find(objs, "ScaledJob"):
            for t in o["spec"]["triggers"]:
                ref = t.get("authenticationRef")
                if ref:
                    require(ref["name"] in auths, f"{label(o)}: no TriggerAuthentication {ref['name']}")
                    for st in auths[ref["name"]]["spec"].get("secretTargetRef", []):
                        require(
                            st["parameter"] in keda.RABBITMQ_AUTH_PARAMETERS,
                            f"TriggerAuthentication/{ref['name']}: {st['parameter']} is not a rabbitmq auth parameter",
                        )
                        require(
                            st["key"] in secrets.get(st["name"], {}),
                            f"TriggerAuthentication/{ref['name']}: Secret {st['name']} key {st['key']} is not in secrets.example.yaml",
                        )
        for pdb in find(objs, "PodDisruptionBudget"):
            sel = pdb["spec"]["selector"]["matchLabels"]
            matched = [
                w
                for w, meta, _ in (p for o in objs for p in pod_specs(o))
                if all((meta.get("labels") or {}).get(k) == v for k, v in sel.items())
            ]
            require(bool(matched), f"{label(pdb)} selects no pods")

    def worker_form() -> None:
        kinds = sorted(o["kind"] for o in workers)
        require(
            kinds in (["Deployment"], ["ScaledJob"]),
            f"expected the worker as a Deployment or a ScaledJob, got {kinds}",
        )
        scalers = find(objs, "ScaledObject") + find(objs, "ScaledJob")
        if kinds == ["Deployment"]:
            require(
                len(find(objs, "ScaledObject")) == 1, "the worker Deployment needs exactly one ScaledObject"
            )
            require(
                bool(find(objs, "PodDisruptionBudget")), "the worker Deployment needs a PodDisruptionBudget"
            )
        for s in scalers:
            spec = s["spec"]
            require(
                spec.get("minReplicaCount", 0) == 0,
                f"{label(s)}: minReplicaCount must be 0 (no idle workers)",
            )
            require(spec.get("maxReplicaCount", 100) >= 1, f"{label(s)}: maxReplicaCount must be at least 1")
            for t in spec["triggers"]:
                meta = t["metadata"]
                require(t["type"] == "rabbitmq", f"{label(s)}: trigger {t['type']}, expected rabbitmq")
                require(
                    meta.get("queueName") == queues["JOBS"],
                    f"{label(s)}: watches {meta.get('queueName')}, the jobs queue is {queues['JOBS']}",
                )
                require(meta.get("mode") == "QueueLength", f"{label(s)}: scale on mode QueueLength")
                require(
                    float(meta.get("activationValue", "0")) < 1,
                    f"{label(s)}: activationValue {meta.get('activationValue')}: the first message must wake the workers (active when length > value)",
                )
                require(
                    meta.get("protocol") == "http",
                    f"{label(s)}: protocol http, so unacked (in-progress) jobs count and busy workers are not scaled away",
                )

    def worker_pods() -> None:
        for o in workers:
            ((where, meta, pod),) = pod_specs(o)
            c = next(c for c in pod["containers"] if c["name"] == "worker")
            env = container_env(c, configs, secrets)
            drain = int(env.get("DISPR_DRAIN_TIMEOUT_SECS", "300"))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            require(
                grace > drain,
                f"{where}: terminationGracePeriodSeconds {grace} must exceed DISPR_DRAIN_TIMEOUT_SECS {drain}",
            )
            port = next((p for p in c.get("ports", []) if p.get("name") == "metrics"), None)
            require(port is not None, f"{where}: no container port named metrics")
            http = env.get("DISPR_HTTP_ADDR", "0.0.0.0:9090")
            require(
                http.endswith(f":{port['containerPort']}"),
                f"{where}: metrics port {port['containerPort']} is not DISPR_HTTP_ADDR {http}",
            )
            ann = meta.get("annotations") or {}
            require(
                ann.get("prometheus.io/scrape") == "true"
                and ann.get("prometheus.io/port") == str(port["containerPort"])
                and ann.get("prometheus.io/path") == "/metrics",
                f"{where}: Prometheus annotations missing or wrong: {ann}",
            )
            probes = {
                k: (c.get(k) or {}).get("httpGet", {}).get("path")
                for k in ("startupProbe", "readinessProbe", "livenessProbe")
            }
            require(
                probes["livenessProbe"] == "/healthz",
                f"{where}: livenessProbe must GET /healthz, has {probes['livenessProbe']}",
            )
            require(
                probes["startupProbe"] in ("/healthz", "/readyz"),
                f"{where}: startupProbe must GET /healthz or /readyz",
            )
            if o["kind"] == "Deployment":
                require(
                    probes["readinessProbe"] == "/readyz",
                    f"{where}: readinessProbe must GET /readyz, has {probes['readinessProbe']}",
                )
            sc = pod.get("securityContext") or {}
            require(
                sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001,
                f"{where}: run as the image's non-root user (runAsNonRoot, runAsUser 10001)",
            )
            if o["kind"] == "ScaledJob":
                args = c.get("args") or []
                require(
                    "--max-jobs" in args and args[args.index("--max-jobs") + 1] == "1",
                    f"{where}: a ScaledJob worker must take one job and exit (serve --max-jobs 1)",
                )
                require(
                    pod.get("restartPolicy") == "Never",
                    f"{where}: restartPolicy Never (RabbitMQ redelivers, not the Job)",
                )

    def accelerators() -> None:
        device = configs.get("dispr-config", {}).get("DISPR_DEVICE")
        require(
            device == ("gpu" if gpu else "cpu"),
            f"ConfigMap/dispr-config: DISPR_DEVICE is {device!r}; submit plans jobs with the step time of the workers' device",
        )
        timeout = int(configs.get("dispr-config", {}).get("DISPR_CONSUMER_TIMEOUT_SECS", "0"))
        require(
            timeout >= 1800,
            "ConfigMap/dispr-config: set DISPR_CONSUMER_TIMEOUT_SECS to the broker's consumer_timeout",
        )
        for o in workers:
            ((where, _, pod),) = pod_specs(o)
            c = next(c for c in pod["containers"] if c["name"] == "worker")
            gpus = str(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", ""))
            image_tag = c["image"].rsplit(":", 1)[-1]
            if gpu:
                require(
                    gpus == "1", f"{where}: GPU workers need limits nvidia.com/gpu: 1, have {gpus or 'none'}"
                )
                require(
                    bool(pod.get("nodeSelector")), f"{where}: GPU workers need a nodeSelector for GPU nodes"
                )
                require(
                    any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []),
                    f"{where}: GPU workers need a toleration for the nvidia.com/gpu taint",
                )
                require(
                    image_tag.startswith("cuda"),
                    f"{where}: GPU workers need the CUDA image, have {c['image']}",
                )
            else:
                require(not gpus, f"{where}: CPU workers must not request GPUs")
                require(
                    image_tag.startswith("cpu"), f"{where}: CPU workers need the CPU image, have {c['image']}"
                )

    def coordinator() -> None:
        jobs = find(objs, "Job", "dispr-run")
        require(len(jobs) == 1, "no coordinator Job dispr-run")
        ((_, _, pod),) = pod_specs(jobs[0])
        steps = [(c.get("args") or [None, None])[1] for c in containers(pod)]
        require(
            steps == ["submit", "watch", "report"],
            f"Job/dispr-run runs {steps}, expected submit, watch, report in order",
        )

    def env_names() -> None:
        read = workspace.env_read(root)
        used_as_args = {
            v
            for _, _, pod in (p for o in objs for p in pod_specs(o))
            for c in containers(pod)
            for a in (c.get("args") or [])
            for v in _VAR_REF.findall(str(a))
        }
        for name, data in configs.items():
            for key in data:
                if key.startswith("DISPR_"):
                    require(
                        key in read or key in used_as_args,
                        f"ConfigMap/{name}: {key} is neither read by the binaries nor used in any arguments",
                    )
                elif key.startswith("AWS_"):
                    require(
                        key in cli.AWS_ENV,
                        f"ConfigMap/{name}: {key} is not an AWS SDK setting this project uses",
                    )

    def model() -> None:
        uri = configs.get("dispr-config", {}).get("DISPR_MODEL", "")
        require(bool(uri), "ConfigMap/dispr-config sets no DISPR_MODEL")
        dockerfiles.check_model_uri(root, uri, "ConfigMap/dispr-config DISPR_MODEL")

    checks = [
        ("schemas (built-in kinds)", schemas),
        ("the model is a checkpoint the image holds", model),
        ("KEDA objects: documented fields", keda_fields),
        ("references resolve", references),
        ("DISPR_* settings are used", env_names),
    ]
    if path.name != "base":
        checks += [
            ("namespace", namespaced),
            ("no literal secrets", secrets_by_reference),
            ("worker form and KEDA trigger", worker_form),
            ("worker pods: grace, probes, metrics, user", worker_pods),
            ("CPU/GPU scheduling and image", accelerators),
            ("coordinator Job: submit, watch, report", coordinator),
        ]
    for name, fn in checks:
        report.check(f"{rel}: {name}", fn)

    for where, _, pod in (p for o in objs for p in pod_specs(o)):
        for c in containers(pod):
            inv = cli.parse_argv(f"{rel} {where} {c['name']}", [str(a) for a in (c.get("args") or [])])
            if inv:
                invocations.append(inv)


def run(
    report: Report,
    root: Path,
    queues: dict[str, str],
    invocations: list[cli.Invocation],
    only: set[str] | None = None,
) -> None:
    """All checks of deploy/k8s; `only` limits the rendered targets (e.g. {"base", "gpu"})."""
    k8s = root / "deploy" / "k8s"
    example = k8s / "secrets.example.yaml"
    state: dict[str, Any] = {}

    def secret_examples() -> None:
        require(example.is_file(), f"{example} is missing")
        state["secrets"] = load_secret_examples(example)
        for doc in yaml.safe_load_all(example.read_text()):
            problems = validate_k8s(doc)
            require(not problems, f"{example.name}: {problems}")
        for name, data in state["secrets"].items():
            for k, v in data.items():
                require(
                    "REPLACE-ME" in str(v), f"{example.name}: {name}.{k} must hold a REPLACE-ME placeholder"
                )
        require(
            "EXAMPLE" in example.read_text().splitlines()[0],
            f"{example.name}: the first line must mark it as an example",
        )

    def overlays_present() -> None:
        names = {p.name for p in (k8s / "overlays").iterdir() if (p / "kustomization.yaml").exists()}
        require({"cpu", "gpu"} <= names, f"overlays cpu and gpu are required, found {sorted(names)}")
        require(
            any(p.name == "kustomization.yaml" for p in (k8s / "base").iterdir()), "no base kustomization"
        )

    report.check("deploy/k8s/secrets.example.yaml: valid Secrets with placeholders", secret_examples)
    report.check("deploy/k8s: base and overlays cpu, gpu", overlays_present)
    secrets = state.get("secrets", {})
    targets = [k8s / "base"] + sorted(
        p for p in (k8s / "overlays").iterdir() if (p / "kustomization.yaml").exists()
    )
    for path in targets:
        if only is not None and path.name not in only:
            continue
        check_overlay(report, root, path, secrets, queues, invocations)
