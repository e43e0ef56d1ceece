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
