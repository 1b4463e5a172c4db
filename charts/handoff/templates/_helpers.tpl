{{/* Names. One Handoff per cluster: the cluster-scoped objects take the release's fullname. */}}
{{- define "handoff.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "handoff.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "handoff.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "handoff.operatorAccount" -}}
{{- .Values.operator.serviceAccount.name | default (printf "%s-operator" (include "handoff.fullname" .)) -}}
{{- end -}}

{{- define "handoff.consoleAccount" -}}
{{- .Values.console.serviceAccount.name | default (printf "%s-console" (include "handoff.fullname" .)) -}}
{{- end -}}

{{- define "handoff.gatewayAccount" -}}
{{- .Values.gateway.serviceAccount.name | default (printf "%s-gateway" (include "handoff.fullname" .)) -}}
{{- end -}}

{{/* The MCP gateway's user name: admission lets it record executions of MCP requests only. */}}
{{- define "handoff.gatewayUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "handoff.gatewayAccount" .) -}}
{{- end -}}

{{/* The user name the API server gives the operator: the admission policies let it write status. */}}
{{- define "handoff.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "handoff.operatorAccount" .) -}}
{{- end -}}

{{- define "handoff.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security, for every container the chart runs. */}}
{{- define "handoff.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "handoff.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "handoff.redisSecret" -}}
{{- if eq .Values.redis.mode "bundled" -}}
{{- .Values.redis.bundled.auth.existingSecret | default (printf "%s-redis" (include "handoff.fullname" .)) -}}
{{- else -}}
{{- .Values.redis.external.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "handoff.redisHost" -}}
{{- printf "%s-redis.%s.svc" (include "handoff.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
A file from files/ as objects: each YAML document gets the chart's labels (and, for CRDs, the keep
policy) and nothing else changes; tests compare the result with crds/ field for field.
*/}}
{{- define "handoff.filesAsObjects" -}}
{{- $root := .root -}}
{{- range $path, $_ := $root.Files.Glob .glob }}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($root.Files.Get $path) -1 }}
{{- $text := $doc -}}
{{- if $.replace }}{{ $text = replace $.replace.old $.replace.new $text }}{{ end -}}
{{- if $.replaceGateway }}{{ $text = replace $.replaceGateway.old $.replaceGateway.new $text }}{{ end -}}
{{- $object := fromYaml $text -}}
{{- if $object }}
{{- $metadata := $object.metadata -}}
{{- $_ := set $metadata "labels" (merge (dict) ($metadata.labels | default dict) (include "handoff.labels" $root | fromYaml)) -}}
{{- if $.keep }}
{{- $_ := set $metadata "annotations" (merge (dict) ($metadata.annotations | default dict) (dict "helm.sh/resource-policy" "keep")) -}}
{{- end }}
---
{{ toYaml $object }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
