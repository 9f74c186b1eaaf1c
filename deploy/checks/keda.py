"""Checks of KEDA objects (ScaledObject, ScaledJob, TriggerAuthentication) against the fields
KEDA documents. KEDA's CRD schemas are not available offline, so the documented fields are
written down here, from the KEDA 2.x reference ("ScaledObject specification", "ScaledJob
specification", "Authentication" and the "RabbitMQ Queue" scaler pages, and the Go types in
apis/keda/v1alpha1). Embedded Kubernetes types (the ScaledJob's JobSpec, the HPA behavior)
are validated with the Kubernetes schemas instead, by wrapping them in their own kind.

Each function returns a list of problems; an empty list means the object is valid."""

from __future__ import annotations

import re
from typing import Any, Callable

API_VERSION = "keda.sh/v1alpha1"
KINDS = {"ScaledObject", "ScaledJob", "TriggerAuthentication"}

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "initialCooldownPeriod",
    "cooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "advanced",
    "triggers",
    "fallback",
}
SCALE_TARGET_REF = {"name", "apiVersion", "kind", "envSourceContainerName"}
ADVANCED = {"horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount", "scalingModifiers"}
HPA_CONFIG = {"behavior", "name"}
FALLBACK = {"failureThreshold", "replicas", "behavior"}

SCALED_JOB_SPEC = {
    "jobTargetRef",
    "pollingInterval",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "rolloutStrategy",
    "rollout",
    "envSourceContainerName",
    "minReplicaCount",
    "maxReplicaCount",
    "scalingStrategy",
    "triggers",
}
SCALING_STRATEGY = {
    "strategy": {"default", "custom", "accurate", "eager"},
    "customScalingQueueLengthDeduction": None,
    "customScalingRunningJobPercentage": None,
    "pendingPodConditions": None,
    "multipleScalersCalculation": {"max", "min", "avg", "sum"},
}
ROLLOUT = {"strategy": {"default", "gradual"}, "propagationPolicy": {"foreground", "background"}}

TRIGGER = {"type", "name", "useCachedMetrics", "metadata", "authenticationRef", "metricType"}
METRIC_TYPES = {"AverageValue", "Value", "Utilization"}
AUTH_REF_KINDS = {"TriggerAuthentication", "ClusterTriggerAuthentication"}

# The RabbitMQ Queue scaler.
RABBITMQ_METADATA = {
    "host",
    "protocol",
    "mode",
    "value",
    "activationValue",
    "queueName",
    "vhostName",
    "hostFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "unsafeSsl",
    "timeout",
    "useRegex",
    "pageSize",
    "operation",
    "excludeUnacknowledged",
}
RABBITMQ_DEPRECATED = {"queueLength", "publishRate", "metricName"}
RABBITMQ_PROTOCOLS = {"auto", "amqp", "http"}
RABBITMQ_MODES = {
    "QueueLength",
    "MessageRate",
    "DeliverGetRate",
    "PublishedToDeliveredRatio",
    "ExpectedQueueConsumptionTime",
}
RABBITMQ_AUTH_PARAMETERS = {
    "host",
    "username",
    "password",
    "vhostName",
    "tls",
    "ca",
    "cert",
    "key",
    "workloadIdentityResource",
}

TRIGGER_AUTH_SPEC = {
    "podIdentity",
    "secretTargetRef",
    "configMapTargetRef",
    "env",
    "hashiCorpVault",
    "azureKeyVault",
    "gcpSecretManager",
    "awsSecretManager",
}
TARGET_REF = {"parameter", "name", "key"}


def unknown(where: str, obj: Any, allowed: set[str] | dict) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: expected a mapping, got {type(obj).__name__}"]
    return [
        f"{where}.{k}: not a field KEDA documents (allowed: {', '.join(sorted(allowed))})"
        for k in obj
        if k not in allowed
    ]


def non_negative_ints(where: str, obj: dict, *fields: str) -> list[str]:
    return [
        f"{where}.{f}: must be a non-negative integer, got {obj[f]!r}"
        for f in fields
        if f in obj and (not isinstance(obj[f], int) or isinstance(obj[f], bool) or obj[f] < 0)
    ]


def enum(where: str, obj: dict, allowed: dict[str, set[str] | None]) -> list[str]:
    return [
        f"{where}.{k}: {obj[k]!r} is not one of {sorted(v)}"
        for k, v in allowed.items()
        if v is not None and k in obj and obj[k] not in v
    ]


def metadata_problems(obj: dict) -> list[str]:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return ["metadata.name is required"]
    return [] if _DNS_NAME.match(name) and len(name) <= 253 else [f"metadata.name {name!r} is not a DNS name"]


def replica_bounds(where: str, spec: dict) -> list[str]:
    problems = non_negative_ints(
        where,
        spec,
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    )
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not problems and lo > hi:
        problems.append(f"{where}: minReplicaCount {lo} exceeds maxReplicaCount {hi}")
    if not problems and "idleReplicaCount" in spec and spec["idleReplicaCount"] >= lo:
        problems.append(f"{where}: idleReplicaCount must be less than minReplicaCount")
    return problems


def trigger_problems(where: str, trig: Any) -> list[str]:
    problems = unknown(where, trig, TRIGGER)
    if problems:
        return problems
    if not isinstance(trig.get("type"), str) or not trig["type"]:
        problems.append(f"{where}.type is required")
    meta = trig.get("metadata")
    if not isinstance(meta, dict):
        return problems + [f"{where}.metadata is required (a map of strings)"]
    problems += [
        f"{where}.metadata.{k}: values must be strings (quote it), got {v!r}"
        for k, v in meta.items()
        if not isinstance(v, str)
    ]
    if "metricType" in trig and trig["metricType"] not in METRIC_TYPES:
        problems.append(f"{where}.metricType {trig['metricType']!r} is not one of {sorted(METRIC_TYPES)}")
    if "authenticationRef" in trig:
        ref = trig["authenticationRef"]
        problems += unknown(f"{where}.authenticationRef", ref, {"name", "kind"})
        if isinstance(ref, dict):
            if not ref.get("name"):
                problems.append(f"{where}.authenticationRef.name is required")
            if ref.get("kind", "TriggerAuthentication") not in AUTH_REF_KINDS:
                problems.append(f"{where}.authenticationRef.kind must be one of {sorted(AUTH_REF_KINDS)}")
    if trig.get("type") == "rabbitmq":
        problems += rabbitmq_problems(f"{where}.metadata", meta, "authenticationRef" in trig)
    return problems


def rabbitmq_problems(where: str, meta: dict, has_auth: bool) -> list[str]:
    problems = [
        f"{where}.{k}: deprecated by KEDA; use mode + value" for k in meta if k in RABBITMQ_DEPRECATED
    ]
    problems += [
        f"{where}.{k}: not a parameter of the rabbitmq scaler"
        for k in meta
        if k not in RABBITMQ_METADATA | RABBITMQ_DEPRECATED
    ]
    if not meta.get("queueName"):
        problems.append(f"{where}.queueName is required")
    if not (meta.get("host") or meta.get("hostFromEnv") or has_auth):
        problems.append(f"{where}: the broker address needs host, hostFromEnv or a TriggerAuthentication")
    if meta.get("host") and "@" in meta["host"]:
        problems.append(f"{where}.host holds credentials; use a TriggerAuthentication")
    problems += enum(
        where,
        meta,
        {"protocol": RABBITMQ_PROTOCOLS, "mode": RABBITMQ_MODES, "operation": {"sum", "max", "avg"}},
    )
    if "mode" in meta and "value" not in meta:
        problems.append(f"{where}: mode needs a value")
    for k in ("value", "activationValue"):
        if k in meta and not _NUMBER.match(str(meta[k])):
            problems.append(f"{where}.{k}: {meta[k]!r} is not a number")
    if meta.get("mode", "QueueLength") != "QueueLength" and meta.get("protocol") != "http":
        problems.append(f"{where}: mode {meta['mode']} needs protocol http")
    if meta.get("useRegex") == "true" and meta.get("protocol") != "http":
        problems.append(f"{where}: useRegex needs protocol http")
    return problems


def triggers_problems(where: str, spec: dict) -> list[str]:
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [f"{where}.triggers: at least one trigger is required"]
    problems = []
    names = [t.get("name") for t in triggers if isinstance(t, dict) and t.get("name")]
    if len(names) != len(set(names)):
        problems.append(f"{where}.triggers: trigger names must be unique")
    for i, t in enumerate(triggers):
        problems += trigger_problems(f"{where}.triggers[{i}]", t)
    return problems


def scaled_object(obj: dict, validate_k8s: Callable[[dict], list[str]]) -> list[str]:
    spec = obj.get("spec")
    problems = metadata_problems(obj) + unknown("spec", spec, SCALED_OBJECT_SPEC)
    if problems:
        return problems
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        problems.append("spec.scaleTargetRef.name is required")
    else:
        problems += unknown("spec.scaleTargetRef", ref, SCALE_TARGET_REF)
    problems += replica_bounds("spec", spec)
    adv = spec.get("advanced")
    if adv is not None:
        problems += unknown("spec.advanced", adv, ADVANCED)
        hpa = (adv or {}).get("horizontalPodAutoscalerConfig")
        if hpa is not None:
            problems += unknown("spec.advanced.horizontalPodAutoscalerConfig", hpa, HPA_CONFIG)
            if isinstance(hpa, dict) and "behavior" in hpa:
                problems += [
                    f"spec.advanced.horizontalPodAutoscalerConfig.behavior: {p}"
                    for p in validate_k8s(hpa_with_behavior(hpa["behavior"]))
                ]
    if "fallback" in spec:
        fb = spec["fallback"]
        problems += unknown("spec.fallback", fb, FALLBACK)
        if isinstance(fb, dict):
            problems += [
                f"spec.fallback.{f} is required" for f in ("failureThreshold", "replicas") if f not in fb
            ]
    return problems + triggers_problems("spec", spec)


def scaled_job(obj: dict, validate_k8s: Callable[[dict], list[str]]) -> list[str]:
    spec = obj.get("spec")
    problems = metadata_problems(obj) + unknown("spec", spec, SCALED_JOB_SPEC)
    if problems:
        return problems
    job_spec = spec.get("jobTargetRef")
    if not isinstance(job_spec, dict) or "template" not in job_spec:
        problems.append("spec.jobTargetRef (a batch/v1 JobSpec with a template) is required")
    else:
        problems += [f"spec.jobTargetRef: {p}" for p in validate_k8s(job_with_spec(obj, job_spec))]
    problems += replica_bounds("spec", spec)
    if "scalingStrategy" in spec:
        problems += unknown("spec.scalingStrategy", spec["scalingStrategy"], SCALING_STRATEGY)
        problems += enum("spec.scalingStrategy", spec["scalingStrategy"], SCALING_STRATEGY)
    if "rollout" in spec:
        problems += unknown("spec.rollout", spec["rollout"], ROLLOUT) + enum(
            "spec.rollout", spec["rollout"], ROLLOUT
        )
    if "rolloutStrategy" in spec:
        problems.append("spec.rolloutStrategy is deprecated by KEDA; use spec.rollout.strategy")
    return problems + triggers_problems("spec", spec)


def trigger_authentication(obj: dict) -> list[str]:
    spec = obj.get("spec")
    problems = metadata_problems(obj) + unknown("spec", spec, TRIGGER_AUTH_SPEC)
    if problems:
        return problems
    if not spec:
        return ["spec: a TriggerAuthentication needs at least one source (secretTargetRef, env, ...)"]
    for field in ("secretTargetRef", "configMapTargetRef"):
        for i, ref in enumerate(spec.get(field, []) or []):
            problems += unknown(f"spec.{field}[{i}]", ref, TARGET_REF)
            problems += [f"spec.{field}[{i}].{f} is required" for f in TARGET_REF if not (ref or {}).get(f)]
    return problems


def hpa_with_behavior(behavior: Any) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-check"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "x"},
            "maxReplicas": 1,
            "behavior": behavior,
        },
    }


def job_with_spec(owner: dict, job_spec: dict) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": owner["metadata"]["name"]},
        "spec": job_spec,
    }


def validate(obj: dict, validate_k8s: Callable[[dict], list[str]]) -> list[str]:
    """Problems of one KEDA object (dispatch on kind)."""
    if obj.get("apiVersion") != API_VERSION:
        return [f"apiVersion {obj.get('apiVersion')!r}: KEDA objects are {API_VERSION}"]
    kind = obj.get("kind")
    if kind == "ScaledObject":
        return scaled_object(obj, validate_k8s)
    if kind == "ScaledJob":
        return scaled_job(obj, validate_k8s)
    if kind == "TriggerAuthentication":
        return trigger_authentication(obj)
    return [f"kind {kind!r} is not checked here"]
