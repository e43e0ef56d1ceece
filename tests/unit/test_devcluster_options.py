"""Devcluster options that need no running servers: the apiserver's audit flags and client
certificates of their own for components."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from edgeops.devcluster.cluster import DevCluster


def _apiserver_argv(dev: DevCluster, policy: Path | None) -> list[str]:
    return dev._apiserver_argv(
        {"kube-apiserver": Path("/bin/kube-apiserver")}, dev._ports(), dev.pki, policy
    )


def test_the_apiserver_writes_an_audit_log_only_when_given_a_policy(tmp_path: Path) -> None:
    dev = DevCluster(name="unit", home=tmp_path)
    assert not [a for a in _apiserver_argv(dev, None) if a.startswith("--audit")]
    policy = tmp_path / "policy.yaml"
    argv = _apiserver_argv(dev, policy)
    assert f"--audit-policy-file={policy}" in argv
    assert f"--audit-log-path={dev.audit_log}" in argv


def test_a_user_kubeconfig_authenticates_with_its_own_certificate(tmp_path: Path) -> None:
    dev = DevCluster(name="unit", home=tmp_path)
    path = dev.user_kubeconfig("bench-operator", ("system:masters", "bench"))
    config = json.loads(path.read_text())
    user = config["users"][0]
    assert user["name"] == "bench-operator"
    assert config["contexts"][0]["context"]["user"] == "bench-operator"
    assert config["clusters"][0]["cluster"]["server"] == dev.endpoints()["kube-apiserver"]
    cert = x509.load_pem_x509_certificate(Path(user["user"]["client-certificate"]).read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(dev.pki.ca_cert.read_bytes()))
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "bench-operator"
    ]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters",
        "bench",
    ]
