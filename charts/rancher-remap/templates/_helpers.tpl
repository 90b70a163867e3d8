{{- define "rancher-remap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it already says rancher-remap. */}}
{{- define "rancher-remap.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rancher-remap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rancher-remap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rancher-remap.labels" -}}
{{ include "rancher-remap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.role }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "rancher-remap.destination" -}}
{{- if eq .Values.role "destination" }}true{{ end }}
{{- end }}

{{/* Whether this release runs the server: always, except a destination whose rewrite is the
policies alone (values rewrite). */}}
{{- define "rancher-remap.server" -}}
{{- if not (and (include "rancher-remap.destination" .) (eq .Values.rewrite "policy")) }}true{{ end }}
{{- end }}

{{/* Whether this release installs export-policy's policies (values rewrite, policy). */}}
{{- define "rancher-remap.policies" -}}
{{- if and (include "rancher-remap.destination" .) (ne .Values.rewrite "webhook") }}true{{ end }}
{{- end }}

{{/* Whether the server makes and renews its own certificates (neither cert-manager nor an
existing Secret). */}}
{{- define "rancher-remap.serverManagedCerts" -}}
{{- if not (or .Values.certManager.enabled .Values.tls.existingSecret) }}true{{ end }}
{{- end }}

{{/* The webhook configurations of this release, as serve --webhook-configuration names them. */}}
{{- define "rancher-remap.webhookConfigurations" -}}
{{- $fullname := include "rancher-remap.fullname" . }}
{{- if include "rancher-remap.destination" . -}}
mutating/{{ $fullname }},validating/{{ $fullname }}-mappings,validating/{{ $fullname }}-clusterpairs
{{- else -}}
validating/{{ $fullname }}-clusterpairs
{{- end }}
{{- end }}

{{/* Where the serving pair lives. */}}
{{- define "rancher-remap.tlsSecret" -}}
{{- if and (not .Values.certManager.enabled) .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- include "rancher-remap.fullname" . }}-tls
{{- end }}
{{- end }}

{{/* The namespaces no webhook is sent: kube-system, the release's own, and the operator's. */}}
{{- define "rancher-remap.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/* The common fields of every webhook: the Service, the version, the failure policy. */}}
{{- define "rancher-remap.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "rancher-remap.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}

{{- define "rancher-remap.caInjection" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "rancher-remap.fullname" . }}-tls
{{- end }}
{{- end }}

{{/* The helm test Pod (templates/tests/doctor.yaml): its own labels, never the server's selector. */}}
{{- define "rancher-remap.doctorLabels" -}}
app.kubernetes.io/name: {{ include "rancher-remap.name" . }}-doctor
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- define "rancher-remap.doctorHook" -}}
helm.sh/hook: test
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
