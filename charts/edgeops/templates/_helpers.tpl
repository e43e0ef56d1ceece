{{- define "edgeops.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edgeops.labels" -}}
app.kubernetes.io/name: edgeops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "edgeops.selectorLabels" -}}
app.kubernetes.io/name: edgeops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "edgeops.gatewayName" -}}
{{- printf "%s-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edgeops.gatewaySelectorLabels" -}}
app.kubernetes.io/name: edgeops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}


{{/* imagePullSecrets, nodeSelector, tolerations and affinity of a pod: "pod" is the values
holding the scheduling keys (.Values or .Values.gateway), "root" the chart's context. */}}
{{- define "edgeops.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "edgeops.gatewayUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "edgeops.gatewayName" .) .Release.Namespace .Values.gateway.service.port -}}
{{- end -}}

{{/* The namespaces the operator is limited to, as a JSON list (watchNamespaces plus the
older single watchNamespace), unique and sorted; [] means the whole cluster. */}}
{{- define "edgeops.watchNamespaces" -}}
{{- $names := concat (.Values.watchNamespaces | default list) (compact (list .Values.watchNamespace)) -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* Rules of the operator in a namespace it reconciles EdgeOps objects in (a Role per
watched namespace, or the cluster-wide ClusterRole). Every verb is one a call in
edgeops/k8s/ or a Kopf handler in edgeops/controllers/ makes; README.md "RBAC" lists them. */}}
{{- define "edgeops.operatorRules" -}}
# Kopf watches the five kinds (indexes, handlers) and patches their metadata (finalizers,
# handler progress annotations); the controllers patch labels/annotations (custom.patch_metadata).
- apiGroups: [edgeops.dev]
  resources: [datasets, trainingruns, edgemodels, fleetrollouts, devices]
  verbs: [get, list, watch, patch]
# One status writer per kind (custom.patch_status, a merge patch of /status).
- apiGroups: [edgeops.dev]
  resources: [datasets/status, trainingruns/status, edgemodels/status, fleetrollouts/status, devices/status]
  verbs: [patch]
# TrainingRuns and FleetRollouts an EdgeModel owns, written with server-side apply: a PATCH
# that creates when absent, so the API server asks for create as well. Never deleted (the
# garbage collector follows ownerReferences).
- apiGroups: [edgeops.dev]
  resources: [trainingruns, fleetrollouts]
  verbs: [create]
# Training and collection Jobs: applied (get + create + patch), watched by Kopf indexes;
# a collection Job that succeeded is deleted once the Dataset's status records it.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# Training and collection pods: a Kopf index (the pod's phase and exit reason), never read
# one by one; the collector's report is its pod's last log line.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Per run: the trainer's config ConfigMap, a Secret of scoped short-lived S3 credentials
# (<run>-train-s3, <model>-s3); per served model: a ServiceAccount listing that Secret for
# KServe's storage initializer. Their names derive from the runs' and models', so
# resourceNames cannot scope them; Secrets are never listed or watched.
- apiGroups: [""]
  resources: [configmaps, secrets, serviceaccounts]
  verbs: [get, create, patch]
# Events (Kopf's and ours; a repeat patches the count of the existing Event).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# Serving (spec.serving): the model's InferenceService (deleted when serving is turned
# off) and its ServingRuntime.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [serving.kserve.io]
  resources: [servingruntimes]
  verbs: [get, create, patch]
{{- end -}}

{{/* Rules of the operator in its own (the release) namespace only: the signing key and
its public-key ConfigMap, the S3 credentials, and evaluation Jobs, which run there with the
operator's S3 keys so that no tenant can read them. */}}
{{- define "edgeops.operatorHomeRules" -}}
# Kubernetes cannot restrict create by name (the name is not known when it is authorized),
# so create is unscoped; every other verb names the objects.
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [create]
# The signing key (generated once when absent) and the evaluator's S3 Secret.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ .Values.signing.existingSecret | quote }}, "edgeops-evaluator-s3"]
  verbs: [get, patch]
{{- if .Values.s3.existingSecret }}
# The S3 credentials (EDGEOPS_S3_SECRET), read only.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ .Values.s3.existingSecret | quote }}]
  verbs: [get]
{{- end }}
# The public signing keys devices and the gateway trust.
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [edgeops-signing]
  verbs: [get, patch]
# Evaluation Jobs (named after the run they evaluate) and their pods' log, which carries
# the evaluator's result line.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Read-only rules for the release namespace when only some namespaces are watched: Kopf
watches every kind it has handlers for in each namespace it serves, the release namespace
included (for the evaluation Jobs); EdgeOps objects belong in a watched namespace. */}}
{{- define "edgeops.operatorHomeWatchRules" -}}
- apiGroups: [edgeops.dev]
  resources: [datasets, trainingruns, edgemodels, fleetrollouts, devices]
  verbs: [list, watch]
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [list, watch]
{{- end -}}

{{/* Kopf's peering objects (several replicas), in each namespace it serves, or the
cluster-scoped ones when it serves the whole cluster. */}}
{{- define "edgeops.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, patch]
{{- end -}}

{{/* Rules of the gateway in a namespace it serves (a Role per watched namespace, or its
ClusterRole): every call in edgeops/gateway/ and edgeops/k8s/fleet.py. */}}
{{- define "edgeops.gatewayRules" -}}
# A Device read at enrollment (read_device) and created (create_device); its labels and
# identity patched at enrollment (patch_device).
- apiGroups: [edgeops.dev]
  resources: [devices]
  verbs: [get, create, patch]
# What a device runs, its update phase and health (patch_device_status).
- apiGroups: [edgeops.dev]
  resources: [devices/status]
  verbs: [patch]
# The Dataset a sample upload goes to (read_object, cached).
- apiGroups: [edgeops.dev]
  resources: [datasets]
  verbs: [get]
# Bootstrap tokens: a Secret per token in the device's namespace, named after the token's
# hash (so resourceNames cannot list them). Read to check a token, updated to count its
# uses (a merge patch carrying the resourceVersion read: compare-and-swap, so the verb is
# patch); never listed or created.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, patch]
{{- end -}}
