"""The operator's configuration: one pydantic-settings object read from ``EDGEOPS_*``
environment variables (the Helm chart sets them from its values).

Every field names its unit, its default and why that default was chosen; the README's
"Configuration" table is generated from these fields (``python -m edgeops.settings``) and a
unit test keeps it, ``charts/edgeops/values.yaml`` and the Deployment template in step.

Read once per process through :func:`settings`; tests that change the environment call
``settings.cache_clear()``. A bad value raises :class:`SettingsError`, whose one-line
message names the variable (never the value of a secret).

The KServe predictor runs in its own pod with its own environment: its one variable is in
:class:`PredictorSettings` here, so that every ``EDGEOPS_*`` variable is documented in one
place, but it is not part of the operator's settings or chart.

This module imports pydantic, pydantic-settings and the standard library only: the trainer
and the predictor import it too.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    Field,
    FilePath,
    Json,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from edgeops.redaction import redact_url

ENV_PREFIX: Final = "EDGEOPS_"

#: Keys of a field's ``json_schema_extra`` that say how the Helm chart sets it:
#: CHART is the values.yaml path (None: not a chart value), CHART_DEFAULT the chart's default
#: when it differs from the field's, CHART_SECRET_KEY the key of the Secret
#: ``s3.existingSecret`` the variable is read from, CHART_SOURCE a sentence for the README
#: when the chart fills the variable in itself.
CHART: Final = "chart"
CHART_DEFAULT: Final = "chart_default"
CHART_SECRET_KEY: Final = "chart_secret_key"
CHART_SOURCE: Final = "chart_source"
#: A field whose value (even a wrong one) is never shown in an error message.
SENSITIVE: Final = "sensitive"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_SECRET_REF = re.compile(rf"^(?:(?P<namespace>{_DNS_LABEL})/)?(?P<name>{_DNS_SUBDOMAIN})$")


class SettingsError(ValueError):
    """A configuration variable is missing or has a bad value. The message is one line
    that names each variable at fault (and shows no secret)."""


def redacted_url(url: str) -> str:
    """``url`` without what may be credentials (:func:`edgeops.redaction.redact_url`)."""
    return redact_url(url)


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be http(s)://host[:port], not {redacted_url(value)!r}")
    return value


_HOST_LABEL = r"[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(\.{_HOST_LABEL})*$")


@dataclass(frozen=True)
class HostAllowlist:
    """Hosts HTTP(S) sources may use: exact names, name suffixes (from ``*.example.com``,
    stored as ``.example.com``) and IP networks."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def admits_name(self, host: str) -> bool:
        """Whether the host name ``host`` (lower case, no trailing dot) is listed."""
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def admits_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether ``address`` lies in a listed network."""
        return any(address.version == n.version and address in n for n in self.networks)


def parse_host_allowlist(value: str) -> HostAllowlist:
    """``value`` (comma-separated host names, ``*.`` suffixes, IP addresses and CIDR
    networks) as a :class:`HostAllowlist`.

    Raises:
        ValueError: an entry is none of these (the message names it).
    """
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in value.split(","):
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        if not _HOST_NAME.match(name):
            raise ValueError(f"{entry!r} is not a host name, *.domain, IP address or CIDR network")
        if wildcard:
            suffixes.append("." + name)
        else:
            names.add(name)
    if not (names or suffixes or networks):
        raise ValueError("lists no host (unset it to allow any public host)")
    return HostAllowlist(frozenset(names), tuple(suffixes), tuple(networks))


class OperatorSettings(BaseSettings):
    """Every knob of the operator, each with its unit and why its default was chosen.

    The trainer (in a TrainingRun's Job) reads its S3 settings through this class too; the
    operator sets those variables in the Job's pod.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        # An empty variable means "not set" (as the chart renders unset values), not "".
        env_ignore_empty=True,
    )

    # --- where the operator runs -------------------------------------------------------
    namespace: str = Field(
        "edgeops-system",
        pattern=f"^{_DNS_LABEL}$",
        description="Namespace the operator runs in: its signing-key Secret and public-key "
        "ConfigMap live there, and so does the S3 credentials Secret when `EDGEOPS_S3_SECRET` "
        "names no namespace. Default `edgeops-system`, the namespace the README installs "
        "into; the chart sets it to the release namespace.",
        json_schema_extra={
            CHART: None,
            CHART_SOURCE: "the release namespace (`fieldRef: metadata.namespace`)",
        },
    )
    resync_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds between periodic re-reconciliations of an object while nothing "
        "changes. Reconciliation is event-driven; this only bounds how long a missed event "
        "(or a change outside Kubernetes, e.g. in S3) can go unnoticed. Default 60: a minute "
        "of staleness at most, at a negligible API load.",
        json_schema_extra={CHART: "resyncIntervalSeconds"},
    )

    source_poll_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds between looks for new objects in the sources of a Dataset with "
        "collection.onNewObjects (S3 and HTTP have no watch). Each look is one listing "
        "of the sources, never an API-server call. Default 10: new device samples start a "
        "collection within seconds, at one S3 listing per Dataset every 10 s.",
        json_schema_extra={CHART: "sourcePollIntervalSeconds"},
    )

    trigger_batch_seconds: float = Field(
        5.0,
        ge=0,
        description="Seconds an EdgeModel waits after a retraining trigger fires before it "
        "starts the run, so triggers that fire together (a drift report and a person's "
        "request, a new dataset version and a config commit) start one run that lists them "
        "all. Default 5: longer than a CLI call or a GitOps sync takes, negligible next to "
        "a training run. 0 starts at once.",
        json_schema_extra={CHART: "triggerBatchSeconds"},
    )
    device_sweep_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds between sweeps of the operator's in-memory index of Devices for "
        "devices not seen for 3 report intervals (`spec.reportIntervalSeconds`, at least 3 "
        "lastSeen write intervals `EDGEOPS_GATEWAY_LAST_SEEN_SECONDS`, read from the "
        "operator's environment too), which it marks `Ready=Unknown` and health Unknown "
        "(reason NotSeen). A sweep makes no API call unless a device went stale. Default "
        "30: a stale device shows within 30 s of its threshold (3 min by default).",
        json_schema_extra={CHART: "devices.sweepSeconds"},
    )

    # --- Dataset sources ------------------------------------------------------------------
    http_source_allowed_hosts: str | None = Field(
        None,
        description="Comma-separated hosts that Dataset HTTP(S) sources may fetch from; "
        "unset: any host with a public address. An entry is a host name "
        "(`data.example.com`), every subdomain of one (`*.example.com`), or an IP address or "
        "CIDR network (`10.20.0.0/16`), which also admits host names that resolve only into "
        "it, private or not. A URL whose host matches no entry is refused before any "
        "connection. Cloud metadata addresses are refused whatever this says.",
        json_schema_extra={CHART: "datasets.http.allowedHosts"},
    )
    http_source_allow_private_networks: bool = Field(
        False,
        description="Let Dataset HTTP(S) sources fetch from private, loopback, link-local "
        "and shared (100.64.0.0/10) addresses, for on-premises data servers. Default false: "
        "a tenant's URL must not reach the cluster's internal services (server-side request "
        "forgery). Every address a host resolves to, and every redirect, is checked before "
        "connecting; cloud metadata, multicast, unspecified and reserved addresses are "
        "refused even when this is true (list a CIDR in the allowed hosts to admit one "
        "private network only).",
        json_schema_extra={CHART: "datasets.http.allowPrivateNetworks"},
    )
    http_source_deadline_seconds: float = Field(
        120.0,
        gt=0,
        description="Seconds one HTTP(S) source download may take in all (name resolution, "
        "connecting, redirects, and the whole body), whatever the server's pace: a slow or "
        "trickling server is cut off and the collection fails with reason "
        "SourceLimitExceeded, so it cannot hold a collection Job. Default 120: 64 MiB at "
        "a modest 5 Mbit/s.",
        json_schema_extra={CHART: "datasets.http.deadlineSeconds"},
    )
    source_max_object_mib: int = Field(
        64,
        ge=1,
        description="MiB (2^20 bytes): the largest source object (an S3 object, inbox upload "
        "or HTTP(S) download) a collection reads. A larger S3 object is rejected (reason "
        "TooLarge) without being downloaded; an HTTP(S) download stops at this size and the "
        "collection fails (SourceLimitExceeded). Default 64: a collection Job still holds "
        "a source object's rows in memory. The collection Jobs get this limit from the "
        "operator.",
        json_schema_extra={CHART: "datasets.maxObjectMiB"},
    )
    source_max_decompressed_mib: int = Field(
        128,
        ge=1,
        description="MiB (2^20 bytes): the most a compressed source object (npz, Parquet) "
        "may expand to, judged from its own headers before anything is decompressed (the "
        "arrays' declared shapes and dtypes, the Parquet footer's uncompressed sizes) and "
        "checked again while reading; over it the object is rejected (reason TooLarge). "
        "Default 128: a compression bomb of 500 kB must not take 500 MiB.",
        json_schema_extra={CHART: "datasets.maxDecompressedMiB"},
    )
    source_max_rows_per_object: int = Field(
        200_000,
        ge=1,
        description="Rows: the most rows one source object may hold (CSV and JSON Lines "
        "records, Parquet rows, npz array length). An object over it is rejected as a whole "
        "(reason TooLarge, its rows counted as rejected where the object says how many), so "
        "a version never holds a silently truncated file. Default 200000: about 100 MB of "
        "Python objects for ten columns.",
        json_schema_extra={CHART: "datasets.maxRowsPerObject"},
    )

    # --- S3 -------------------------------------------------------------------------------
    s3_endpoint: str | None = Field(
        None,
        description="S3 endpoint the operator uses, `http(s)://host[:port]`. Unset: the "
        "`endpoint` key of the credentials Secret. No default: there is no S3 everyone has.",
        json_schema_extra={CHART: "s3.endpoint", SENSITIVE: True},
    )
    s3_job_endpoint: str | None = Field(
        None,
        description="S3 endpoint as seen from training pods and KServe predictors, when it "
        "differs from the operator's own (e.g. an in-cluster Service name). Default: the "
        "operator's endpoint.",
        json_schema_extra={CHART: "s3.jobEndpoint", SENSITIVE: True},
    )
    s3_bucket: str = Field(
        "edgeops",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket for dataset versions, training artifacts and model bundles. "
        "Default `edgeops`, the bucket the devcluster creates.",
        json_schema_extra={CHART: "s3.bucket"},
    )
    s3_region: str | None = Field(
        None,
        description="S3 region to sign requests for. Unset: the client asks the server "
        "(MinIO and most on-premises stores need no region; predictors are told `us-east-1`).",
        json_schema_extra={CHART: "s3.region"},
    )
    s3_ca_bundle: FilePath | None = Field(
        None,
        description="Path of a PEM bundle to verify the S3 server's certificate with, for a "
        "private CA (mount it with `extraVolumes`/`extraVolumeMounts`). Unset: the system "
        "CAs (certifi). Must exist at start-up.",
        json_schema_extra={CHART: "s3.caBundle"},
    )
    s3_insecure_skip_verify: bool = Field(
        False,
        description="Accept any S3 server certificate. Development only: it lets anyone on "
        "the path read and change models. Default false.",
        json_schema_extra={CHART: "s3.insecureSkipVerify"},
    )
    s3_secret: str | None = Field(
        None,
        description="Credentials Secret as `namespace/name`, or `name` in the operator's "
        "namespace, with keys `accessKey`, `secretKey` and optionally `endpoint` (used when "
        "`EDGEOPS_S3_ENDPOINT` is unset). Its keys win over the two variables below, and it "
        "is read again after S3 refuses them, so a rotated Secret takes effect without a "
        "restart. Unset: the variables only.",
        json_schema_extra={CHART: "s3.existingSecret", CHART_DEFAULT: "edgeops-s3"},
    )
    s3_access_key: SecretStr | None = Field(
        None,
        description="S3 access key, when not in the credentials Secret. Never logged.",
        json_schema_extra={
            CHART: "s3.existingSecret",
            CHART_SECRET_KEY: "accessKey",
            SENSITIVE: True,
        },
    )
    s3_secret_key: SecretStr | None = Field(
        None,
        description="S3 secret key, when not in the credentials Secret. Never logged.",
        json_schema_extra={
            CHART: "s3.existingSecret",
            CHART_SECRET_KEY: "secretKey",
            SENSITIVE: True,
        },
    )

    s3_role_arn: str | None = Field(
        None,
        description="Role the operator assumes (STS `AssumeRole`) to issue the scoped, "
        "short-lived credentials training pods and KServe predictors get. AWS requires it (a "
        "role the operator's keys may assume, with the bucket's permissions); MinIO ignores "
        "it and scopes the operator's own user. Unset: no role named (right for MinIO).",
        json_schema_extra={CHART: "s3.roleArn"},
    )
    s3_sts_endpoint: str | None = Field(
        None,
        description="STS endpoint (`http(s)://host[:port]`) the operator asks for scoped "
        "credentials with `AssumeRole`. Default: the S3 endpoint, where MinIO serves STS; on "
        "AWS, `https://sts.<region>.amazonaws.com`.",
        json_schema_extra={CHART: "s3.stsEndpoint"},
    )
    s3_pod_credentials_seconds: int = Field(
        43200,
        ge=3600,
        le=604800,
        description="Longest lifetime, in seconds, of the scoped S3 credentials a training "
        "pod or a KServe predictor gets. A training Job with `activeDeadlineSeconds` gets "
        "credentials for its deadline plus 300 s (at least 3600: the S3 client never asks "
        "STS for less) up to this; predictor "
        "credentials are issued for this long and re-issued after half of it. Default 43200 "
        "(12 h, the longest session AWS allows a role); MinIO accepts up to 365 days.",
        json_schema_extra={CHART: "s3.podCredentialsSeconds"},
    )

    # --- Prometheus -----------------------------------------------------------------------
    prometheus_url: str | None = Field(
        None,
        description="Base URL of the Prometheus HTTP API (`http(s)://host[:port]`) that "
        "FleetRollout analysis queries (and the drift monitor will). Unset: every analysis "
        "measurement is Error (never a pass or a failure), so analysis steps pause after "
        "their errorLimit. The devcluster sets it.",
        json_schema_extra={CHART: "prometheus.url"},
    )
    prometheus_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds one Prometheus query may take (connect and read) before the "
        "measurement is Error. Default 10.",
        json_schema_extra={CHART: "prometheus.timeoutSeconds"},
    )

    # --- the operator process -------------------------------------------------------------
    admission_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the validating admission webhook (HTTPS) that refuses what the "
        "CRDs' schemas cannot express (bad Ed25519 keys, durations over 10 years, label "
        "selector syntax, gates on metrics never reported) and warns about likely mistakes. "
        "The operator registers it in the ValidatingWebhookConfiguration "
        "`admission.edgeops.dev` (failurePolicy Ignore: while the operator is down, only the "
        "schemas check). Unset: no webhook. The devcluster sets it.",
        json_schema_extra={CHART: "admission.port"},
    )
    admission_host: str | None = Field(
        None,
        description="Host (DNS name or IP) the API server calls the webhook at, in its URL "
        "and certificate. Unset: 127.0.0.1 (the API server on the same machine, as in the "
        "devcluster).",
        json_schema_extra={CHART: "admission.host"},
    )
    admission_cert_file: str | None = Field(
        None,
        description="PEM certificate of the webhook, also sent to the API server as its CA "
        "bundle. Unset: a self-signed certificate for the host is made at start-up.",
        json_schema_extra={CHART: "admission.certFile"},
    )
    admission_key_file: str | None = Field(
        None,
        description="PEM private key of `EDGEOPS_ADMISSION_CERT_FILE`.",
        json_schema_extra={CHART: "admission.keyFile"},
    )
    health_port: int = Field(
        8080,
        ge=1,
        le=65535,
        description="Port of the liveness endpoint `/healthz`. Default 8080, the common "
        "probe port. The `--health-port` flag overrides it.",
        json_schema_extra={CHART: "health.port"},
    )
    metrics_port: int = Field(
        9090,
        ge=1,
        le=65535,
        description="Port of the Prometheus `/metrics` endpoint. Default 9090. The "
        "`--metrics-port` flag overrides it.",
        json_schema_extra={CHART: "metrics.port"},
    )
    bind_address: str = Field(
        "127.0.0.1",
        description="IP address the health and metrics endpoints listen on. Default "
        "`127.0.0.1` (a process on a workstation exposes nothing); the operator image and "
        "the chart use `0.0.0.0`, so that the kubelet's probe and Prometheus reach the pod. "
        "The `--bind-address` flag overrides it.",
        json_schema_extra={CHART: "bindAddress", CHART_DEFAULT: "0.0.0.0"},
    )
    watch_server_timeout_seconds: int = Field(
        60,
        ge=1,
        description="Whole seconds after which the API server ends a watch stream, which is "
        "then re-established: a stream that went silent without closing (proxies, API "
        "server restarts) is noticed within this time. Default 60.",
        json_schema_extra={CHART: "kubernetesApi.watchServerTimeoutSeconds"},
    )
    watch_client_timeout_seconds: float = Field(
        90.0,
        gt=0,
        description="Seconds after which the operator itself gives up on a watch stream, in "
        "case the server does not end it. Must exceed the server timeout, or every watch "
        "ends as an error. Default 90 (server timeout + 30).",
        json_schema_extra={CHART: "kubernetesApi.watchClientTimeoutSeconds"},
    )
    watch_connect_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds to wait for a watch connection to the API server. Default 10: "
        "a reachable API server answers in well under a second.",
        json_schema_extra={CHART: "kubernetesApi.watchConnectTimeoutSeconds"},
    )
    api_request_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds one of Kopf's API requests (status patches, events; not "
        "watches) may take before Kopf retries it. Default 60 (Kopf's own is 300): a hung "
        "request should not stall an object's handlers for five minutes.",
        json_schema_extra={CHART: "kubernetesApi.requestTimeoutSeconds"},
    )
    signing_key_secret: str = Field(
        "edgeops-signing-key",
        pattern=f"^{_DNS_SUBDOMAIN}$",
        description="Name of the Secret in the operator's namespace holding the Ed25519 "
        "signing key (key `privateKey`, base64 of the 32-byte seed). Generated there on "
        "first start when absent; name an existing Secret (e.g. one an external secret "
        "manager writes) to bring your own key. Default `edgeops-signing-key`.",
        json_schema_extra={CHART: "signing.existingSecret"},
    )
    signing_key_refresh_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds between re-reads of the signing-key Secret (a key rotated in "
        "the Secret signs new model versions within this time, without a restart) and "
        "between checks that the public-key ConfigMap in the operator's namespace is still "
        "there. "
        "Default 300: rotation is rare, and each check is two API calls.",
        json_schema_extra={CHART: "signing.keyRefreshSeconds"},
    )

    bundle_validity_days: float = Field(
        30.0,
        gt=0,
        le=3650,
        description="Days a signed bundle manifest is valid (its `expiresAt`); verifiers "
        "refuse it afterwards. The operator signs every approved version still in the "
        "registry again once a third of this is left. Default 30: a device offline for a "
        "month re-downloads its manifest, and a leaked or revoked bundle stops verifying "
        "within a month.",
        json_schema_extra={CHART: "signing.bundleValidityDays"},
    )

    @field_validator("s3_endpoint", "s3_job_endpoint", "s3_sts_endpoint", "prometheus_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("http_source_allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_allowlist(value)
        return value

    @field_validator("s3_secret")
    @classmethod
    def _check_secret_ref(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_REF.match(value):
            raise ValueError("must be 'namespace/name' or 'name' of a Secret")
        return value

    @field_validator("bind_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        if self.watch_client_timeout_seconds <= self.watch_server_timeout_seconds:
            raise ValueError(
                f"{env_name('watch_client_timeout_seconds')} "
                f"({self.watch_client_timeout_seconds:g}) must exceed "
                f"{env_name('watch_server_timeout_seconds')} "
                f"({self.watch_server_timeout_seconds}), or every watch ends as an error"
            )
        if self.health_port == self.metrics_port:
            raise ValueError(
                f"{env_name('health_port')} and {env_name('metrics_port')} are both "
                f"{self.health_port}"
            )
        return self

    @property
    def http_source_allowlist(self) -> HostAllowlist | None:
        """The parsed ``http_source_allowed_hosts``; None when unset (any public host)."""
        if self.http_source_allowed_hosts is None:
            return None
        return parse_host_allowlist(self.http_source_allowed_hosts)

    @property
    def s3_secret_ref(self) -> tuple[str, str] | None:
        """(namespace, name) of the credentials Secret ``s3_secret`` names, if any."""
        if self.s3_secret is None:
            return None
        namespace, _, name = self.s3_secret.rpartition("/")
        return namespace or self.namespace, name


class PredictorSettings(BaseSettings):
    """The KServe predictor's configuration (its own pod; the operator sets the variables
    as literal values in the InferenceService it applies: the keys from its own namespace,
    the binding from the EdgeModel)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )

    signing_public_keys: Json[dict[str, str]] = Field(
        description="JSON object `{keyId: base64 Ed25519 public key}` that model bundles "
        "must be signed with; no default, so nothing unsigned is ever served. The operator "
        "fills it in from key `publicKeys.json` of ConfigMap `edgeops-signing` in its own "
        "namespace (never from a copy a tenant can edit).",
        min_length=1,
        json_schema_extra={CHART: None, CHART_SOURCE: "set by the operator"},
    )
    model_namespace: str = Field(
        description="Namespace the served bundle must be signed for.",
        min_length=1,
        max_length=63,
        json_schema_extra={CHART: None, CHART_SOURCE: "set by the operator"},
    )
    model_name: str = Field(
        description="EdgeModel the served bundle must be signed for.",
        min_length=1,
        max_length=253,
        json_schema_extra={CHART: None, CHART_SOURCE: "set by the operator"},
    )
    model_uid: str | None = Field(
        None,
        max_length=64,
        description="UID of that EdgeModel: a bundle of a deleted model of the same name is "
        "refused.",
        json_schema_extra={CHART: None, CHART_SOURCE: "set by the operator"},
    )
    model_version: int = Field(
        ge=1,
        description="Version number the served bundle must be signed for.",
        json_schema_extra={CHART: None, CHART_SOURCE: "set by the operator"},
    )
    predictor_max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Bytes: the largest inference request body (V1 or V2, JSON) the "
        "predictor accepts; a larger one is answered 413 before it is read further, so one "
        "client cannot push the predictor to its memory limit (a request's JSON can take ten "
        "times its size in memory). Default 4194304 (4 MiB): about 100000 float features.",
        json_schema_extra={CHART: None, CHART_SOURCE: "the predictor's environment"},
    )


class TrainerSettings(BaseSettings):
    """What a training pod reads besides the operator's ``EDGEOPS_S3_*`` settings (which the
    operator sets in the Job too): the session token of its scoped credentials."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )

    s3_session_token: SecretStr | None = Field(
        None,
        description="Session token of the scoped, short-lived S3 credentials (STS "
        "`AssumeRole`) the operator issued for this run; it sets the token with the access "
        "and secret key (`EDGEOPS_S3_ACCESS_KEY`, `EDGEOPS_S3_SECRET_KEY`) from the run's "
        "Secret `<run>-train-s3`. Unset: the keys are used as long-lived keys. Never logged.",
        json_schema_extra={
            CHART: None,
            CHART_SOURCE: "set by the operator (Secret `<run>-train-s3`)",
            SENSITIVE: True,
        },
    )


class GatewaySettings(BaseSettings):
    """The fleet gateway's own settings (``edgeops gateway run``); it reads the operator's
    ``EDGEOPS_S3_*`` settings too, to serve signed bundle manifests. Chart values under
    ``gateway.`` (the gateway's Deployment, ``templates/gateway.yaml``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )

    gateway_port: int = Field(
        8088,
        ge=1,
        le=65535,
        description="Port the gateway's HTTP API listens on. Default 8088. The `--port` flag "
        "overrides it.",
        json_schema_extra={CHART: "gateway.port"},
    )
    gateway_bind_address: str = Field(
        "127.0.0.1",
        description="IP address the gateway listens on. Default `127.0.0.1` (nothing exposed "
        "on a workstation); a pod uses `0.0.0.0`. The `--bind-address` flag overrides it.",
        json_schema_extra={CHART: "gateway.bindAddress", CHART_DEFAULT: "0.0.0.0"},
    )
    gateway_max_body_bytes: int = Field(
        65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body the gateway reads, in bytes; a larger one is "
        "refused with 413 before it is parsed. Default 65536: enrollment and status reports "
        "are a few kB.",
        json_schema_extra={CHART: "gateway.maxBodyBytes"},
    )
    gateway_signature_window_seconds: int = Field(
        300,
        ge=10,
        le=3600,
        description="Seconds a signed request's `created` may differ from the gateway's clock "
        "(either way); the nonce cache remembers nonces this long, so a captured request "
        "cannot be replayed. Default 300 (RFC 9421 leaves it to the verifier; 5 minutes "
        "absorbs the clock skew of devices without NTP sync).",
        json_schema_extra={CHART: "gateway.signatureWindowSeconds"},
    )
    gateway_requests_per_minute: int = Field(
        120,
        ge=1,
        le=100000,
        description="Requests one device may make per minute (token bucket, bursts of up to "
        "this many); more are refused with 429 and `Retry-After`. Default 120: an agent polls "
        "and reports every few seconds at most.",
        json_schema_extra={CHART: "gateway.requestsPerMinute"},
    )
    gateway_enrollments_per_minute: int = Field(
        30,
        ge=1,
        le=100000,
        description="Failed enrollments (`POST /v1/enroll` refused for any reason) and "
        "requests signed for a Device that does not exist one client address may make per "
        "minute (token bucket, bursts of up to this many); once used up, every enrollment "
        "and every request naming a Device the gateway's cache does not hold is refused from "
        "that address with 429 and `Retry-After` until the bucket refills. These are what "
        "can be sent without a device key, so this bounds token guessing and floods (each "
        "unknown Device costs the gateway one API read). The address is the TCP peer (proxy "
        "headers are ignored): behind a NAT or a load balancer that does not preserve client "
        "addresses, devices share one budget. Default 30.",
        json_schema_extra={CHART: "gateway.enrollmentsPerMinute"},
    )
    gateway_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=300,
        description="Seconds the gateway keeps a Dataset (read by sample uploads) and a signed "
        "bundle manifest (read from S3 for desired state) before reading it again (0: every "
        "request reads). Devices, EdgeModels and FleetRollouts are not cached this way: they "
        "come from watches, so a change reaches every replica within moments. Default 2: a "
        "bundle signed again reaches devices within seconds, at one S3 read per bundle "
        "every 2 s under load.",
        json_schema_extra={CHART: "gateway.cacheSeconds"},
    )
    gateway_presign_seconds: int = Field(
        300,
        ge=10,
        le=3600,
        description="Lifetime in seconds of the presigned S3 URL an artifact download "
        "redirects to (`GET .../artifacts/{sha256}`); the device never holds S3 credentials, "
        "only this URL for one object. Default 300: long enough to start a download over a "
        "slow link (S3 checks the expiry when the request starts), short enough that a "
        "leaked URL is soon useless. At most 3600 (the store caps URLs at one hour).",
        json_schema_extra={CHART: "gateway.presignSeconds"},
    )
    gateway_replay_scope: Literal["cluster", "replica"] = Field(
        "cluster",
        description="Where a report's sequence is remembered against replays. `cluster`: "
        "every accepted report (telemetry included) stores its sequence in the Device's "
        "status by compare-and-swap, so a report replayed to any replica is refused; the "
        "price is one API write per report (1000 devices reporting every 30 s: 33 writes/s). "
        "`replica`: this process remembers sequences and nonces itself and writes a Device's "
        "status only when the report changes it or lastSeen is due; exact with one replica "
        "only, so the chart refuses it with more than one or with autoscaling. Its limit: "
        "memory does not survive a restart, so a report signed within the signature window "
        "before a restart, with a sequence above the last one written, can be replayed once "
        "after it (as with any per-process nonce cache). Default `cluster`.",
        json_schema_extra={CHART: "gateway.replayScope"},
    )
    gateway_last_seen_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Seconds between refreshes of a Device's `status.lastSeen`, judged from the "
        "stored value (so replicas agree): a report older than this since the last refresh "
        "writes it along with its sequence. Default 60.",
        json_schema_extra={CHART: "gateway.lastSeenSeconds"},
    )


_Settings = TypeVar("_Settings", bound=BaseSettings)


def env_name(field: str, model: type[BaseSettings] = OperatorSettings) -> str:
    """The environment variable that sets ``field`` of ``model``."""
    if field not in model.model_fields:
        raise KeyError(field)
    return f"{ENV_PREFIX}{field.upper()}"


def _describe(error: ValidationError, model: type[BaseSettings]) -> str:
    """One line naming each variable at fault; values are shown except for secrets."""
    problems = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        if field not in model.model_fields:  # a rule across fields names them itself
            problems.append(message)
            continue
        info = model.model_fields[field]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        shown = ""
        if not extra.get(SENSITIVE) and item["type"] != "missing":
            shown = f" (got {item['input']!r})"
        problems.append(f"{env_name(field, model)}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)


def load(model: type[_Settings]) -> _Settings:
    """``model`` read from the environment now.

    Raises:
        SettingsError: a variable is missing or has a bad value (the message names it).
    """
    try:
        return model()
    except ValidationError as error:
        raise SettingsError(_describe(error, model)) from None
    except _SourceError as error:  # a JSON variable that is not JSON
        raise SettingsError(f"invalid configuration: {error}") from None


@functools.cache
def settings() -> OperatorSettings:
    """The operator's settings, read from the environment on first use.

    Raises:
        SettingsError: a variable has a value of the wrong type or out of range (the
            message names the variable).
    """
    return load(OperatorSettings)


@functools.cache
def trainer_settings() -> TrainerSettings:
    """A training pod's own settings, read from the environment on first use.

    Raises:
        SettingsError: never in practice (every field is optional).
    """
    return load(TrainerSettings)


@functools.cache
def gateway_settings() -> GatewaySettings:
    """The fleet gateway's settings, read from the environment on first use.

    Raises:
        SettingsError: a variable has a bad value (the message names it).
    """
    return load(GatewaySettings)


@functools.cache
def predictor_settings() -> PredictorSettings:
    """The predictor's settings, read from the environment on first use.

    Raises:
        SettingsError: ``EDGEOPS_SIGNING_PUBLIC_KEYS`` is missing or not a JSON object.
    """
    return load(PredictorSettings)


# --- documentation ------------------------------------------------------------------------


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    default = info.default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def _chart(extra: dict[str, Any]) -> str:
    path = extra.get(CHART)
    if path is None:
        return str(extra.get(CHART_SOURCE, "—"))
    if CHART_SECRET_KEY in extra:
        return f"key `{extra[CHART_SECRET_KEY]}` of Secret `{path}`"
    if CHART_DEFAULT in extra:
        return f"`{path}` (default `{extra[CHART_DEFAULT]}`)"
    return f"`{path}`"


def markdown_table(model: type[BaseSettings] = OperatorSettings) -> str:
    """The README's table of ``model``'s variables: variable, chart value, default,
    meaning."""
    rows = ["| variable | chart value | default | meaning |", "|---|---|---|---|"]
    for field, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(
            f"| `{env_name(field, model)}` | {_chart(extra)} | {_default(info)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


README_BEGIN: Final = "<!-- settings table: generated by `python -m edgeops.settings README.md` -->"
README_END: Final = "<!-- end of settings table -->"


def readme_block() -> str:
    """The generated part of the README's "Configuration" section."""
    return (
        f"{README_BEGIN}\n\n"
        "Operator (and, for the `EDGEOPS_S3_*` variables it sets in the Job, the trainer):\n\n"
        f"{markdown_table(OperatorSettings)}\n"
        "Training pod (besides the `EDGEOPS_S3_*` variables above):\n\n"
        f"{markdown_table(TrainerSettings)}\n"
        "KServe predictor pod:\n\n"
        f"{markdown_table(PredictorSettings)}\n"
        "Fleet gateway (`edgeops gateway run`, besides the `EDGEOPS_S3_*` variables above):\n\n"
        f"{markdown_table(GatewaySettings)}\n"
        f"{README_END}"
    )


def update_readme(path: Path) -> bool:
    """Rewrites the generated block of the README at ``path``; True if it changed."""
    text = path.read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    updated = text[:start] + readme_block() + text[end:]
    if updated != text:
        path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        changed = update_readme(Path(sys.argv[1]))
        print(f"{sys.argv[1]}: {'updated' if changed else 'up to date'}")
    else:
        print(readme_block())
