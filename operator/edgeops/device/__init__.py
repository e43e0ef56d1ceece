"""The reference device agent (``device`` extra: ONNX Runtime, LiteRT).

* :mod:`~edgeops.device.identity` - the Ed25519 key, generated once, 0600;
* :mod:`~edgeops.device.sequence` - the persistent per-device report sequence;
* :mod:`~edgeops.device.client` - the signed gateway API (:mod:`edgeops.api.wire`), back-off;
* :mod:`~edgeops.device.slots` - A/B slots, the crash-safe journal and the boot rule;
* :mod:`~edgeops.device.install` - verify, download, check, switch, health check, commit or
  roll back;
* :mod:`~edgeops.device.models` / :mod:`~edgeops.device.health` - runtimes and the health
  check (ONNX, TFLite, int8, TFLite-Micro bundles);
* :mod:`~edgeops.device.runtime`, :mod:`~edgeops.device.telemetry`,
  :mod:`~edgeops.device.sampling` - inference, aggregates and samples;
* :mod:`~edgeops.device.agent` - the loop; :mod:`~edgeops.device.command` - its CLI.
"""
