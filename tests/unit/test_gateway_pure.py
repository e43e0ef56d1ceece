"""The gateway's pure parts: RFC 9421 signature base (against the RFC's Ed25519 example),
Content-Digest, bootstrap-token checks, nonce cache and rate limit; the desired-version
policy (cohort hash, selectors, rollout override); artifact manifests and the sampling
policy in the desired state."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from edgeops import httpsig
from edgeops.api.common import LabelSelector
from edgeops.api.edgemodel import Target
from edgeops.gateway.artifacts import artifact_key, manifest_artifacts
from edgeops.gateway.desired import desired_sampling
from edgeops.gateway.limits import NonceCache, RateLimiter
from edgeops.gateway.tokens import TokenError, check_token, new_token, secret_name, token_data
from edgeops.policy.desired import (
    RolloutView,
    choose_target,
    cohort_bucket,
    desired_version,
    in_cohort,
    selector_matches,
)

# RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6.
RFC_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----"""
B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6"
    "vuQv5lIp5WPpBKRCw==:"
)
B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)


def test_signature_base_and_signature_of_rfc9421_b26() -> None:
    parsed = httpsig.parse(B26_INPUT, B26_SIGNATURE)
    assert parsed.label == "sig-b26" and parsed.params["created"] == 1618884473
    values = [
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("@method", "POST"),
        ("@path", "/foo"),
        ("@authority", "example.com"),
        ("content-type", "application/json"),
        ("content-length", "18"),
    ]
    base = httpsig.signature_base(values, parsed.params_text)
    assert base.decode() == B26_BASE
    key = load_pem_public_key(RFC_PUBLIC)
    key.verify(parsed.signature, base)  # type: ignore[union-attr]
    assert httpsig.signature_params(
        [c for c, _ in values], [("created", 1618884473), ("keyid", "test-key-ed25519")]
    ) == B26_INPUT.removeprefix("sig-b26=")


def test_content_digest_rfc9530() -> None:
    # RFC 9530 appendix: {"hello": "world"} with sha-256.
    body = b'{"hello": "world"}'
    assert httpsig.content_digest(body) == (
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    )
    assert httpsig.digest_matches(httpsig.content_digest(body), body)
    assert not httpsig.digest_matches(httpsig.content_digest(body), body + b" ")
    assert not httpsig.digest_matches("sha-512=:abc=:", body)


def _signed(key: Ed25519PrivateKey, body: bytes = b"{}") -> tuple[httpsig.Parsed, dict[str, str]]:
    headers = httpsig.sign_request(
        key, "ns/dev", "POST", "/v1/devices/ns/dev/status", body, created=1700000000
    )
    lower = {k.lower(): v for k, v in headers.items()}
    return httpsig.parse(lower["signature-input"], lower["signature"]), lower


def test_sign_and_verify_the_device_profile() -> None:
    key = Ed25519PrivateKey.generate()
    parsed, headers = _signed(key)
    verified = httpsig.check_profile(parsed)
    assert (verified.keyid, verified.created) == ("ns/dev", 1700000000)
    httpsig.verify(parsed, [key.public_key()], "POST", "/v1/devices/ns/dev/status", headers)
    for method, path, changed in (
        ("GET", "/v1/devices/ns/dev/status", headers),
        ("POST", "/v1/devices/ns/other/status", headers),
        ("POST", "/v1/devices/ns/dev/status", {**headers, "content-digest": "sha-256=:AAAA:"}),
    ):
        with pytest.raises(httpsig.SignatureError) as error:
            httpsig.verify(parsed, [key.public_key()], method, path, changed)
        assert error.value.reason == "BadSignature"
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(httpsig.SignatureError):
        httpsig.verify(parsed, [other], "POST", "/v1/devices/ns/dev/status", headers)
    # Rotation: either of the device's keys verifies, and the answer says which.
    path = "/v1/devices/ns/dev/status"
    assert httpsig.verify(parsed, [other, key.public_key()], "POST", path, headers) == 1
    assert httpsig.verify(parsed, [key.public_key(), other], "POST", path, headers) == 0


def test_the_profile_is_enforced() -> None:
    parsed = httpsig.parse(B26_INPUT, B26_SIGNATURE)
    with pytest.raises(httpsig.SignatureError, match="does not cover"):
        httpsig.check_profile(parsed)
    no_alg = '("@method" "@path" "content-digest");created=1;nonce="abcdefgh";keyid="a/b"'
    with pytest.raises(httpsig.SignatureError, match="alg"):
        httpsig.check_profile(httpsig.parse(f"sig={no_alg}", "sig=:AAAA:"))
    with pytest.raises(httpsig.SignatureError):
        httpsig.parse("sig=garbage", "sig=:AAAA:")
    with pytest.raises(httpsig.SignatureError):
        httpsig.parse(f"sig={no_alg}", "other=:AAAA:")


def test_bootstrap_tokens() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token, secret = new_token()
    assert secret_name(token) == secret
    data = token_data(
        token, expires_at=now + timedelta(hours=1), max_uses=2, labels={"a": "b"}, auto_approve=True
    )
    assert (
        token not in data.values()
        and data["tokenSha256"] == hashlib.sha256(token.encode()).hexdigest()
    )
    grant = check_token(token, data, now)
    assert (grant.labels, grant.auto_approve, grant.uses) == ({"a": "b"}, True, 0)
    cases = [
        ("InvalidToken", token[:-1] + ("A" if token[-1] != "A" else "B"), data, now),
        ("TokenExpired", token, data, now + timedelta(hours=2)),
        ("TokenUsedUp", token, {**data, "uses": "2"}, now),
    ]
    for reason, candidate, stored, moment in cases:
        with pytest.raises(TokenError) as error:
            check_token(candidate, stored, moment)
        assert error.value.reason == reason
    with pytest.raises(TokenError):
        secret_name("not-a-token")


def test_nonce_cache_and_rate_limit() -> None:
    nonces = NonceCache(window=600)
    assert nonces.add("a", "n1", 0) and not nonces.add("a", "n1", 10)
    assert nonces.add("b", "n1", 10)  # per device
    assert nonces.add("a", "n1", 700)  # forgotten after the window
    limiter = RateLimiter(per_minute=2)
    assert limiter.take("d", 0) == 0 and limiter.take("d", 0) == 0
    wait = limiter.take("d", 0)
    assert 0 < wait <= 30
    assert limiter.take("e", 0) == 0
    assert limiter.take("d", 31) == 0


def test_failed_enrollment_budget_is_checked_without_taking() -> None:
    # The enrollment endpoint checks an address's budget with wait() and charges it with
    # take() only once the enrollment failed: successes and checks cost nothing.
    budget = RateLimiter(per_minute=3)
    for _ in range(10):
        assert budget.wait("10.0.0.1", 0) == 0
    for _ in range(3):
        budget.take("10.0.0.1", 0)
    wait = budget.wait("10.0.0.1", 0)
    assert wait == pytest.approx(20)  # one failure a 20 s at 3 a minute
    assert budget.wait("10.0.0.1", 1) == pytest.approx(19)  # waiting does not charge
    assert budget.wait("10.0.0.2", 0) == 0  # per address
    assert budget.wait("10.0.0.1", 20) == 0  # refilled


def test_enrollment_state_is_the_device_controllers_rule() -> None:
    from edgeops.gateway.context import enrollment_state
    from edgeops.policy.device import enrollment_state as controller_rule

    for approval in ("Pending", "Approved", "Rejected"):
        for decommissioned in (False, True):
            spec = {"approval": approval, "decommissioned": decommissioned}
            assert enrollment_state(spec) == controller_rule(approval, decommissioned)
    assert enrollment_state({}) == "Pending"
    assert enrollment_state({"approval": "Approved", "decommissioned": True}) == "Revoked"


def test_a_rotation_promotes_the_next_key() -> None:
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from edgeops.gateway.context import identity_keys, promoted_identity

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    raw_old, raw_new = (
        k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in (old, new)
    )
    identity = {
        "publicKey": base64.b64encode(raw_old).decode(),
        "nextPublicKey": base64.b64encode(raw_new).decode(),
    }
    device = {"spec": {"identity": identity}}
    current, upcoming = identity_keys(device)
    assert current is not None and upcoming is not None
    patch = promoted_identity(upcoming)
    assert patch == {
        "publicKey": base64.b64encode(raw_new).decode(),
        "fingerprint": hashlib.sha256(raw_new).hexdigest(),
        "nextPublicKey": None,  # merge patch: removes the field
    }
    assert identity_keys({"spec": {"identity": {"publicKey": "not a key"}}}) == (None, None)


def test_cohort_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"uid-1/dev-7").hexdigest()
    assert cohort_bucket("uid-1", "dev-7") == int(digest, 16) % 10000
    names = [f"dev-{i}" for i in range(2000)]
    share = sum(in_cohort("uid-1", n, 10) for n in names) / len(names)
    assert 0.07 < share < 0.13
    # Growing percent keeps every device already in the cohort.
    assert all(in_cohort("uid-1", n, 50) for n in names if in_cohort("uid-1", n, 10))
    assert all(in_cohort("uid-1", n, 100) for n in names)


def test_selector_semantics() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"fleet": "a"},
            "matchExpressions": [
                {"key": "stage", "operator": "NotIn", "values": ["old"]},
                {"key": "site", "operator": "Exists"},
                {"key": "x", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector_matches(sel, {"fleet": "a", "site": "p"})
    assert not selector_matches(sel, {"fleet": "a", "site": "p", "stage": "old"})
    assert not selector_matches(sel, {"fleet": "a"})
    assert not selector_matches(sel, {"fleet": "a", "site": "p", "x": "1"})
    assert not selector_matches(sel, {"fleet": "b", "site": "p"})
    assert selector_matches(None, {})
    inn = LabelSelector.model_validate(
        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["1", "2"]}]}
    )
    assert selector_matches(inn, {"k": "2"}) and not selector_matches(inn, {})


def _rollout(
    name: str, percent: int, *, created: str = "2026-01-01T00:00:00Z", **kw: object
) -> RolloutView:
    base: dict[str, object] = dict(
        name=name, uid=f"uid-{name}", created=created, model="m", version=2,
        phase="Progressing", percent=percent, selector=None,
    )  # fmt: skip
    base.update(kw)
    return RolloutView(**base)  # type: ignore[arg-type]


def test_desired_version() -> None:
    labels = {"edgeops.dev/model": "m"}
    assert desired_version("d", labels, {"m": 1}, []).version == 1  # type: ignore[union-attr]
    assert desired_version("d", {}, {"m": 1}, []) is None
    assert desired_version("d", labels, {"m": None}, []) is None
    full = _rollout("r", 100)
    chosen = desired_version("d", labels, {"m": 1}, [full])
    assert chosen is not None and (
        chosen.version, chosen.rollout, chosen.rollout_uid, chosen.cohort
    ) == (2, "r", "uid-r", "canary")  # fmt: skip
    for inactive in (
        _rollout("r", 100, phase="RolledBack"),
        _rollout("r", 100, phase="Pending"),
        _rollout("r", 100, phase=None),
        _rollout("r", 100, model="other"),
        _rollout("r", 0),
        _rollout("r", 100, selector=LabelSelector(match_labels={"fleet": "x"})),
    ):
        chosen = desired_version("d", labels, {"m": 1}, [inactive])
        assert chosen is not None and (chosen.version, chosen.cohort) == (1, "stable"), inactive
    newer = _rollout("s", 100, created="2026-02-01T00:00:00Z", version=3)
    assert desired_version("d", labels, {"m": 1}, [full, newer]).version == 3  # type: ignore[union-attr]
    # Cohort: at 1 % only devices whose bucket is below 100 are moved.
    names = [f"d{i}" for i in range(300)]
    moved = [
        n for n in names if desired_version(n, labels, {"m": 1}, [_rollout("r", 1)]).version == 2
    ]  # type: ignore[union-attr]
    assert moved == [n for n in names if cohort_bucket("uid-r", n) < 100]
    # Without a model label, a matching rollout assigns its model.
    assert desired_version("d", {}, {}, [full]).model == "m"  # type: ignore[union-attr]


def test_choose_target() -> None:
    generic = Target(name="pi", target_type="linux", format="onnx")
    pi5 = Target(name="pi5", target_type="linux", format="tflite", hardware="rpi5")
    mcu = Target(name="esp", target_type="mcu", format="tflm")
    targets = [generic, pi5, mcu]
    assert choose_target(targets, "linux", "rpi5") == pi5
    assert choose_target(targets, "linux", None) == generic
    assert choose_target(targets, "mcu", "x") == mcu
    assert choose_target([pi5], "linux", "rpi4") is None


def test_artifacts_of_a_stored_manifest_and_their_keys() -> None:
    envelope = json.dumps(
        {
            "keyId": "ed25519:0123456789abcdef",
            "signature": "c2ln",
            "manifest": {"artifacts": [{"name": "model.onnx", "uri": "s3://edgeops/blobs/x"}]},
        }
    ).encode()
    assert manifest_artifacts(envelope) == [{"name": "model.onnx", "uri": "s3://edgeops/blobs/x"}]
    for broken in (b"[]", b'{"manifest": {}}', b'{"manifest": {"artifacts": [1]}}', b"{"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            manifest_artifacts(broken)
    assert artifact_key("s3://edgeops/blobs/sha256/ab/abc", "edgeops") == "blobs/sha256/ab/abc"
    for uri in ("s3://other/blobs/x", "https://edgeops/blobs/x", "s3://edgeops/", "blobs/x"):
        with pytest.raises(ValueError):
            artifact_key(uri, "edgeops")


def test_the_sampling_policy_in_the_desired_state() -> None:
    model: dict[str, Any] = {"spec": {}}
    assert desired_sampling(model) is None
    model["spec"]["sampling"] = {"datasetRef": {"name": "inbox"}, "maxRowsPerHour": 30}
    sampling = desired_sampling(model)
    assert sampling is not None
    assert sampling.model_dump(by_alias=True) == {
        "confidenceBelow": 0.6,
        "misclassified": True,
        "randomShare": 0.0,
        "maxRowsPerHour": 30,
    }
    model["spec"]["sampling"] = {"maxRowsPerHour": 30}  # no datasetRef: unreadable
    assert desired_sampling(model) is None


def test_cache_first_runs_inline_on_hits_and_in_the_threadpool_on_a_miss() -> None:
    import asyncio
    import threading

    from edgeops.gateway.context import Gateway
    from edgeops.settings import GatewaySettings

    def no_store() -> Any:
        raise AssertionError("S3 is not needed here")

    gw = Gateway(GatewaySettings(gateway_cache_seconds=60), no_store)
    loads: list[str] = []
    ran_on: list[str] = []
    effects: list[int] = []

    def load() -> str:
        loads.append(threading.current_thread().name)
        return "value"

    def read_then_write() -> str:
        # A read, then a side effect: a miss must rerun it from the start, never after
        # the side effect.
        value = str(gw.fleet.cached(("object", "ns", "x"), load))
        ran_on.append(threading.current_thread().name)
        effects.append(1)
        return value

    async def twice() -> list[str]:
        return [await gw.cache_first(read_then_write), await gw.cache_first(read_then_write)]

    main = threading.current_thread().name
    assert asyncio.run(twice()) == ["value", "value"]
    assert len(loads) == 1 and loads[0] != main  # the miss loaded in a worker thread
    assert ran_on[0] != main and ran_on[1] == main  # the hit ran on the event loop
    assert effects == [1, 1]  # the aborted inline attempt wrote nothing


def test_desired_version_governing_rollout_phases() -> None:
    """The newest rollout selecting the device decides, by phase; devices outside the cohort
    (and every device after a rollback) get the rollout's stableVersion, not the model's
    currentVersion, which promotion already moved to the new version."""
    labels = {"edgeops.dev/model": "m"}
    names = [f"d{i}" for i in range(200)]
    in_10 = {n for n in names if cohort_bucket("uid-r", n) < 1000}
    assert 5 < len(in_10) < 40

    def versions(view: RolloutView) -> dict[str, int]:
        out = {}
        for n in names:
            chosen = desired_version(n, labels, {"m": 2}, [view])
            assert chosen is not None
            out[n] = chosen.version
        return out

    for phase in ("Progressing", "Paused", "Aborted"):
        got = versions(_rollout("r", 10, phase=phase, stable_version=1))
        assert {n for n, v in got.items() if v == 2} == in_10, phase
        assert {n for n, v in got.items() if v == 1} == set(names) - in_10, phase
    assert set(versions(_rollout("r", 10, phase="RolledBack", stable_version=1)).values()) == {1}
    assert set(versions(_rollout("r", 10, phase="Succeeded", stable_version=1)).values()) == {2}
    # Without a recorded stableVersion the model's current version is the fallback.
    assert set(versions(_rollout("r", 10, phase="RolledBack")).values()) == {2}
    # The newest selecting rollout governs even where its cohort does not admit the device.
    old = _rollout("old", 100, created="2026-01-01T00:00:00Z", version=3, stable_version=1)
    new = _rollout("new", 1, created="2026-03-01T00:00:00Z", version=4, stable_version=1)
    got = {desired_version(n, labels, {"m": 1}, [old, new]).version for n in names}  # type: ignore[union-attr]
    assert got == {1, 4}
    chosen = desired_version("d1", labels, {"m": 1}, [_rollout("r", 10, phase="Succeeded")])
    assert chosen is not None and (chosen.cohort, chosen.rollout) == ("stable", "r")


def test_admitted_buckets_limit_the_cohort_while_a_step_ramps() -> None:
    from edgeops.policy.desired import rollout_view

    labels = {"edgeops.dev/model": "m"}
    names = [f"d{i}" for i in range(300)]
    ramping = _rollout("r", 50, admitted=500, stable_version=1)
    got = {n for n in names if desired_version(n, labels, {"m": 1}, [ramping]).version == 2}  # type: ignore[union-attr]
    assert got == {n for n in names if cohort_bucket("uid-r", n) < 500}
    # The admitted buckets never exceed the step's percent.
    full = _rollout("r", 10, admitted=9000, stable_version=1)
    got = {n for n in names if desired_version(n, labels, {"m": 1}, [full]).version == 2}  # type: ignore[union-attr]
    assert got == {n for n in names if cohort_bucket("uid-r", n) < 1000}
    obj = {
        "metadata": {"name": "r", "uid": "uid-r"},
        "spec": {"modelRef": {"name": "m"}, "version": 2, "steps": [{"percent": 50}]},
        "status": {"phase": "Progressing", "currentStep": 0, "admittedBuckets": 500,
                   "stableVersion": 1},
    }  # fmt: skip
    view = rollout_view(obj)
    assert view is not None and (view.admitted, view.percent, view.stable_version) == (500, 50, 1)


def test_watch_cache_keeps_the_newest_version_and_reads_before_sync_are_not_ready() -> None:
    """Read-your-writes: a write's answer stored ahead of its watch event is not replaced
    by an older event; a deletion older than what is held removes nothing; a relist keeps
    a newer write. Fleet reads before the first list are 503 NotReady."""
    from edgeops.gateway.context import ApiError, Fleet
    from edgeops.k8s.watchcache import WatchCache

    def device(rv: str, **status: Any) -> dict[str, Any]:
        meta = {"namespace": "plant", "name": "cam-1", "resourceVersion": rv, "uid": "u1"}
        return {"metadata": meta, "status": status}

    cache = WatchCache("devices")
    fleet = Fleet(cache, WatchCache("edgemodels"), WatchCache("fleetrollouts"), ttl=0)
    with pytest.raises(ApiError) as early:
        fleet.device("plant", "cam-1")
    assert (early.value.status, early.value.reason) == (503, "NotReady")
    assert not fleet.synced

    cache.apply(device("12", sequence=5))  # what a write returned
    cache.apply(device("11", sequence=4))  # its predecessor's watch event, late
    assert cache.get("plant", "cam-1") == device("12", sequence=5)
    cache._remove(device("10"))  # an old deletion
    assert cache.get("plant", "cam-1") is not None
    cache._replace([device("11", sequence=4), {**device("3"), "metadata": {
        "namespace": "other", "name": "x", "resourceVersion": "3"}}])  # fmt: skip
    assert cache.get("plant", "cam-1") == device("12", sequence=5)  # newer than the list
    assert [o["metadata"]["name"] for o in cache.list("other")] == ["x"]
    cache._remove(device("13"))
    assert cache.get("plant", "cam-1") is None and len(cache) == 1


def test_readyz_waits_for_every_watch_cache() -> None:
    from fastapi.testclient import TestClient

    from edgeops.gateway.app import create_app
    from edgeops.gateway.context import watch_caches
    from edgeops.settings import GatewaySettings

    def no_store() -> Any:
        raise AssertionError("S3 is not needed here")

    caches = watch_caches()  # never started: no lifespan without `with TestClient(...)`
    app = TestClient(create_app(GatewaySettings(), no_store, caches=caches))
    for cache in caches:
        waiting = app.get("/readyz")
        assert waiting.status_code == 503 and waiting.json()["reason"] == "NotReady"
        assert waiting.headers["Retry-After"] == "1"
        cache._synced.set()  # its first list is in
    assert app.get("/readyz").json() == {"status": "ok"}
    assert app.get("/healthz").status_code == 200


def test_the_gateway_reads_step_selectors_up_to_the_current_step() -> None:
    """The gateway sees a rollout through rollout_view: the selectors of the steps started
    so far choose devices whatever their bucket; later steps' do not yet."""
    from edgeops.policy.desired import rollout_view

    steps = [
        {"percent": 0, "selector": {"matchLabels": {"ring": "lab"}}},
        {"percent": 10},
        {"percent": 10, "selector": {"matchLabels": {"ring": "site-first"}}},
        {"percent": 100},
    ]
    obj: dict[str, Any] = {
        "metadata": {"name": "r", "uid": "uid-r", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"modelRef": {"name": "m"}, "version": 2, "steps": steps},
        "status": {"phase": "Progressing", "currentStep": 0, "stableVersion": 1},
    }
    model = {"edgeops.dev/model": "m"}
    lab, first, plain = {**model, "ring": "lab"}, {**model, "ring": "site-first"}, model

    def version(labels: dict[str, str], status: dict[str, Any]) -> int:
        view = rollout_view({**obj, "status": {**obj["status"], **status}})
        assert view is not None
        chosen = desired_version("dev-1", labels, {"m": 1}, [view])
        assert chosen is not None
        return chosen.version

    assert (version(lab, {}), version(first, {}), version(plain, {})) == (2, 1, 1)
    assert version(first, {"currentStep": 2}) == 2
    # Rolled back: chosen devices return too; aborted: they keep the version.
    assert version(lab, {"currentStep": 2, "phase": "RolledBack"}) == 1
    assert version(lab, {"currentStep": 2, "phase": "Aborted"}) == 2
