{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "irmsia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object (release-chart unless the release already contains the chart name);
short enough that "<fullname>-<suffix>" stays a DNS label. */}}
{{- define "irmsia.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "context" $ "component" "minio"). */}}
{{- define "irmsia.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irmsia.name" .context }}-{{ .component }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels of every object of one component. */}}
{{- define "irmsia.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "irmsia.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: irmsia
{{- end }}

{{/* Labels of the generated Argo objects: Hera's (app.kubernetes.io/name = the object's name) plus the chart's. */}}
{{- define "irmsia.argoLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: irmsia
{{- end }}

{{/* The stage pods' labels (podMetadata of the WorkflowTemplate); the release's NetworkPolicies select them. */}}
{{- define "irmsia.podLabels" -}}
{{- $p := include "irmsia.pipeline" . | fromJson }}
{{- toYaml $p.podLabels }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The service account of the stage pods: serviceAccount, or "<fullname>-pipeline" when empty. */}}
{{- define "irmsia.serviceAccountName" -}}
{{- .Values.serviceAccount | default (printf "%s-pipeline" (include "irmsia.fullname" .)) }}
{{- end }}

{{/* The generated pipeline data (stages, parameters, fixed settings) from files/pipeline.json. */}}
{{- define "irmsia.pipeline" -}}
{{- .Files.Get "files/pipeline.json" }}
{{- end }}

{{/* The store's bucket, from store.uri (s3://bucket/prefix). */}}
{{- define "irmsia.bucket" -}}
{{- regexReplaceAll "^s3://([^/]+).*$" .Values.store.uri "${1}" }}
{{- end }}
