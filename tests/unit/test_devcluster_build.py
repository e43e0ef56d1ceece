"""The wrapper module that builds Kubernetes commands from the k8s.io/kubernetes module."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from edgeops.devcluster import build
from edgeops.devcluster.certs import ensure_pki


def test_wrapper_gomod_replaces_each_staging_module_with_its_release(tmp_path: Path) -> None:
    gomod = tmp_path / "kubernetes.mod"
    gomod.write_text(
        "module k8s.io/kubernetes\n\nreplace (\n"
        "\tk8s.io/api => ./staging/src/k8s.io/api\n"
        "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n"
        "\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller\n)\n"
    )
    staging = build._staging_modules(gomod)
    assert staging == ["k8s.io/api", "k8s.io/client-go"]
    text = build.wrapper_gomod("v1.37.2", staging)
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.37.2\n" in text


def test_release_version_is_stamped_into_the_binaries() -> None:
    flags = build.version_ldflags("v1.37.2")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/component-base/version.gitMinor=37" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMajor=1" in flags


def test_pki_is_generated_once_with_envtest_identities(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    first = pki.ca_cert.read_bytes()
    assert ensure_pki(tmp_path).ca_cert.read_bytes() == first  # idempotent
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert next(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)) == "127.0.0.1"
    assert oct(pki.admin_key.stat().st_mode & 0o777) == "0o600"


def test_progress_shows_a_bar_and_percentage_when_the_total_is_known() -> None:
    line = build.progress_line("Kubernetes", 1321, 2642, 95.4)
    assert "[##########----------]  50% (1321/2642 packages, 95s elapsed)" in line
    # Linking follows the last package: the report never claims 100 % before the exit.
    assert " 99% (2642/2642" in build.progress_line("Kubernetes", 2700, 2642, 400)
    assert build.progress_line("MinIO", 12, None, 3) == (
        "  ... MinIO: 12 packages compiled, 3s elapsed"
    )


def test_stale_packages_are_counted_by_go_list(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.test/hello\n\ngo 1.26\n")
    (tmp_path / "main.go").write_text('package main\n\nfunc main() { println("hi") }\n')
    total = build.count_stale_packages(["."], tmp_path, ["-trimpath"])
    assert total is not None and total >= 1  # at least the never-built main package
    # `module@version` arguments are go-install-only: no total, progress without percentage.
    assert build.count_stale_packages(["example.test/none@v1.0.0"], tmp_path, []) is None
