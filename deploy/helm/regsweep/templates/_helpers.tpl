{{/* Chart name, at most 63 characters. */}}
{{- define "regsweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. CronJob names are limited to 52 characters (the
controller appends an 11-character suffix to the Jobs it creates).
*/}}
{{- define "regsweep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "regsweep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regsweep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "regsweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regsweep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regsweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regsweep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "regsweep.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the registry's config.yml is mounted. */}}
{{- define "regsweep.registryConfigPath" -}}
/etc/regsweep/registry/{{ .Values.storage.registryConfig.key }}
{{- end }}

{{/* The command line, one argument per line, as a YAML list. */}}
{{- define "regsweep.args" -}}
{{- $v := .Values -}}
{{- if not (has $v.command (list "gc" "audit")) }}
{{- fail (printf "command must be gc or audit, not %q" $v.command) }}
{{- end }}
- {{ $v.command | quote }}
- {{ printf "--log-format=%v" $v.logFormat | quote }}
- {{ printf "--concurrency=%v" $v.concurrency | quote }}
{{- if $v.quiet }}
- --quiet
{{- end }}
{{- if or $v.storage.registryConfig.configMap $v.storage.registryConfig.secret }}
- {{ printf "--registry-config=%s" (include "regsweep.registryConfigPath" .) | quote }}
{{- end }}
- --cache-dir=/cache/manifests
{{- if eq $v.command "gc" }}
- {{ printf "--grace=%v" $v.gc.grace | quote }}
- {{ printf "--upload-grace=%v" $v.gc.uploadGrace | quote }}
- {{ printf "--max-delete-fraction=%v" $v.gc.maxDeleteFraction | quote }}
- {{ printf "--lock-timeout=%v" $v.gc.lockTimeout | quote }}
{{- if $v.gc.deleteUntagged }}
- --delete-untagged
{{- end }}
{{- if $v.gc.delete }}
- --delete
{{- end }}
{{- else }}
- {{ printf "--fail-on=%v" $v.audit.failOn | quote }}
{{- if $v.audit.verify }}
- --verify
{{- end }}
{{- end }}
{{- if and $v.harbor.enabled (not $v.harbor.history) (eq $v.command "gc") }}
- --harbor-history=false
{{- end }}
{{- if $v.metrics.pushgateway }}
- {{ printf "--pushgateway=%v" $v.metrics.pushgateway | quote }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
