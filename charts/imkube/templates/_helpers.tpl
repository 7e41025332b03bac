{{/* The chart name, for labels. */}}
{{- define "imkube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object-name prefix: <release>-<chart>, or the release when it already holds the chart name. */}}
{{- define "imkube.fullname" -}}
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

{{/* The operator's object name. */}}
{{- define "imkube.operatorName" -}}
{{- printf "%s-operator" (include "imkube.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels of every object. */}}
{{- define "imkube.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "imkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imkube
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "imkube.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "imkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "imkube.operatorLabels" -}}
{{ include "imkube.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "imkube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imkube.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag or the chart's appVersion. */}}
{{- define "imkube.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The full image reference. */}}
{{- define "imkube.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "imkube.imageTag" .) }}
{{- end }}

{{/* Name of a demo dependency object: <fullname>-<dep>. */}}
{{- define "imkube.depName" -}}
{{- printf "%s-%s" (include "imkube.fullname" .root) .dep | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of a demo dependency; call with (dict "root" $ "dep" "redis"). */}}
{{- define "imkube.depLabels" -}}
{{ include "imkube.labels" .root }}
app.kubernetes.io/component: {{ .dep }}
{{- end }}

{{/* Selector labels of a demo dependency. */}}
{{- define "imkube.depSelectorLabels" -}}
app.kubernetes.io/name: {{ include "imkube.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .dep }}
{{- end }}

{{/* The restricted container security context of the demo dependencies. */}}
{{- define "imkube.depSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The MySQL password: the value, else the one in the existing Secret, else a new random one. */}}
{{- define "imkube.mysqlPassword" -}}
{{- if .Values.dependencies.mysql.password }}
{{- .Values.dependencies.mysql.password }}
{{- else }}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "imkube.depName" (dict "root" . "dep" "mysql")) }}
{{- if and $s $s.data (hasKey $s.data "password") }}
{{- index $s.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 24 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The demo S3 secret key: the value, else the one in the existing Secret, else a new random one. */}}
{{- define "imkube.s3SecretKey" -}}
{{- if .Values.dependencies.s3.secretKey }}
{{- .Values.dependencies.s3.secretKey }}
{{- else }}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "imkube.depName" (dict "root" . "dep" "s3")) }}
{{- if and $s $s.data (hasKey $s.data "secretKey") }}
{{- index $s.data "secretKey" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}
