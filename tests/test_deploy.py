"""The Kubernetes manifests are valid against the Kubernetes schemas, and every lsic-cloud
command in them parses with the real command line and probes the port it serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
VERSION = "1.30.0"


def documents() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def test_every_manifest_validates_against_the_kubernetes_schemas():
    docs = documents()
    assert {d["kind"] for _, d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Secret"
    }
    for _, doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)  # raises with the offending field


def containers():
    for name, doc in documents():
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                yield name, c


def test_commands_parse_and_probes_hit_the_operations_port():
    from lsic.cloud.cli import build_parser

    parser = build_parser()
    seen = set()
    for name, c in containers():
        argv = [re.sub(r"\$\((\w+)\)", r"<\1>", a) for a in c["args"]]
        args = parser.parse_args(argv)  # an unknown flag exits here
        seen.add(args.command)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert args.metrics_host == "0.0.0.0" and ports["ops"] == args.metrics_port, f"{name}: the kubelet reaches it"
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] == "ops" and c[probe]["httpGet"]["path"] in ("/healthz", "/readyz")
        env = {e["name"] for e in c.get("env", [])} | {"LSIC_S3_ENDPOINT", "LSIC_BLOBS", "AWS_ACCESS_KEY_ID"}
        assert set(re.findall(r"\$\((\w+)\)", " ".join(c["args"]))) <= env, f"{name}: every $(VAR) is defined"
        if args.command == "decode":
            assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
            cpus = int(c["resources"]["requests"]["cpu"])
            assert 0 < args.decode_processes < cpus, "tile processes and the worker itself fit the pod's CPUs"
        else:
            assert args.listen == "0.0.0.0:50051" and args.tls_cert and not args.insecure
    assert seen == {"serve", "decode"}


def test_devices_can_reach_ingest_and_it_scales():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in documents()}
    assert docs[("Service", "lsic-ingest")]["spec"]["type"] == "LoadBalancer"
    assert docs[("PodDisruptionBudget", "lsic-ingest")]["spec"]["minAvailable"] == 1
    assert docs[("HorizontalPodAutoscaler", "lsic-ingest")]["spec"]["minReplicas"] >= 2
