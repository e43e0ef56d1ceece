"""The validating admission webhook: Kopf's webhook server in the operator process, the
checks in :mod:`edgeops.policy.admission`.

With ``EDGEOPS_ADMISSION_PORT`` set, the operator serves HTTPS on that port and Kopf keeps
the ValidatingWebhookConfiguration ``admission.edgeops.dev`` pointing at it (URL
``https://<EDGEOPS_ADMISSION_HOST>:<port>``, CA bundle = the serving certificate). Every
webhook has ``failurePolicy: Ignore``: when the operator is down, objects are still
admitted after the schemas' and CEL's checks (the controllers then report ``InvalidSpec``),
so a stopped operator never blocks ``kubectl apply`` or a GitOps sync.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import tempfile
from pathlib import Path
from typing import Any, Final

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeops.api.constants import GROUP, VERSION
from edgeops.policy import admission
from edgeops.settings import settings as edgeops_settings

#: Name of the ValidatingWebhookConfiguration Kopf manages.
CONFIGURATION: Final = "admission.edgeops.dev"
#: A self-signed certificate's lifetime; it is made again at every start.
SELF_SIGNED_DAYS: Final = 365


def self_signed(host: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for ``host`` (an IP address or DNS name, put
    in subjectAltName), written with its key into ``directory``; returns (cert, key).

    Kopf's own self-signed mode needs ``certbuilder``/``oscrypto``, which do not load
    OpenSSL 3; ``cryptography`` (already a dependency) makes the same certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "admission.crt", directory / "admission.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def configure(settings: kopf.OperatorSettings) -> None:
    """Serves the webhook when ``EDGEOPS_ADMISSION_PORT`` is set (see the module
    docstring); does nothing otherwise."""
    config = edgeops_settings()
    if config.admission_port is None:
        return
    host = config.admission_host or "127.0.0.1"
    if config.admission_cert_file and config.admission_key_file:
        cert, key = Path(config.admission_cert_file), Path(config.admission_key_file)
    else:
        cert, key = self_signed(host, Path(tempfile.mkdtemp(prefix="edgeops-admission-")))
    settings.admission.server = kopf.WebhookServer(
        addr=config.bind_address,
        port=config.admission_port,
        host=host,
        certfile=str(cert),
        pkeyfile=str(key),
        cafile=str(cert),
    )
    settings.admission.managed = CONFIGURATION


def _validate(plural: str) -> None:
    @kopf.on.validate(
        GROUP,
        VERSION,
        plural,
        id=f"validate-{plural}",
        operations=["CREATE", "UPDATE"],
        ignore_failures=True,
    )
    def check(body: kopf.Body, warnings: list[str], **_: Any) -> None:
        result = admission.review(plural, body)
        warnings.extend(result.warnings)
        if result.errors:
            raise kopf.AdmissionError("; ".join(result.errors), code=422)


class RefusalsAreNotErrors(logging.Filter):
    """Logs a refused spec at INFO: Kopf reports every :class:`kopf.AdmissionError` as
    "Webhook ... failed permanently" at ERROR, so each typo in a user's manifest would page
    whoever alerts on the operator's error log. The refusal itself reaches the user in
    ``kubectl``'s answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (
            record.levelno == logging.ERROR
            and "'validate-" in message
            and "failed permanently" in message
        ):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def register() -> None:
    """Registers the validating handlers with Kopf. Only with a webhook server to serve
    them: Kopf refuses to start when admission handlers exist without one (so an operator
    without ``EDGEOPS_ADMISSION_PORT``, e.g. the chart's default, registers none)."""
    for plural in admission.SPECS:
        _validate(plural)
    logging.getLogger("kopf.objects").addFilter(RefusalsAreNotErrors())


if edgeops_settings().admission_port is not None:
    register()
