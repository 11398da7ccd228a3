{{/* Chart name, cut to 63 characters (a DNS label). */}}
{{- define "claimops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, else release-chart; cut to
63 characters. Component objects append a suffix and cut this part instead (claimops.joinName).
*/}}
{{- define "claimops.fullname" -}}
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

{{/* name-version for the helm.sh/chart label. */}}
{{- define "claimops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Pods of the chart do not carry app.kubernetes.io/part-of=claimops: that label
marks the stage and model-server pods the operator starts.
*/}}
{{- define "claimops.labels" -}}
helm.sh/chart: {{ include "claimops.chart" . }}
{{ include "claimops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels (immutable: never add to them). */}}
{{- define "claimops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "claimops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "claimops.componentLabels" -}}
{{ include "claimops.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "claimops.componentSelectorLabels" -}}
{{ include "claimops.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image reference from {repository, tag}. */}}
{{- define "claimops.image" -}}
{{- if eq (toString .tag) "latest" }}
{{- fail (printf "image %s: tag \"latest\" is not pinned; use a version tag" .repository) }}
{{- end }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/*
BASE-SUFFIX in at most 63 characters (a DNS label, as Service and Job names must be): BASE is
cut, never SUFFIX, so the objects of one release keep distinct names. (list BASE SUFFIX)
*/}}
{{- define "claimops.joinName" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (index . 0 | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* Object names: fullname-SUFFIX within 63 characters. (list $ SUFFIX) */}}
{{- define "claimops.componentName" -}}
{{- include "claimops.joinName" (list (include "claimops.fullname" (index . 0)) (index . 1)) }}
{{- end }}
{{- define "claimops.operatorName" -}}{{ include "claimops.componentName" (list . "operator") }}{{- end }}
{{- define "claimops.uiName" -}}{{ include "claimops.componentName" (list . "ui") }}{{- end }}
{{- define "claimops.mlflowName" -}}{{ include "claimops.componentName" (list . "mlflow") }}{{- end }}
{{- define "claimops.postgresqlName" -}}{{ include "claimops.componentName" (list . "postgresql") }}{{- end }}
{{- define "claimops.minioName" -}}{{ include "claimops.componentName" (list . "minio") }}{{- end }}
{{- define "claimops.uiAdminSecret" -}}{{ include "claimops.componentName" (list . "ui-admin") }}{{- end }}
{{- define "claimops.uiAuthSecret" -}}{{ include "claimops.componentName" (list . "ui-auth") }}{{- end }}
{{- define "claimops.failureDefaults" -}}{{ include "claimops.componentName" (list . "failure-defaults") }}{{- end }}
{{- define "claimops.operatorsRole" -}}{{ include "claimops.componentName" (list . "operators") }}{{- end }}
{{- define "claimops.leaderElectionRole" -}}{{ include "claimops.componentName" (list . "operator-leader-election") }}{{- end }}
{{/*
Cluster-scoped objects carry the namespace, so two releases of one name never collide:
namespace-fullname-SUFFIX within 63 characters. (list $ SUFFIX)
*/}}
{{- define "claimops.clusterName" -}}
{{- $ctx := index . 0 }}
{{- include "claimops.joinName" (list (printf "%s-%s" $ctx.Release.Namespace (include "claimops.fullname" $ctx)) (index . 1)) }}
{{- end }}

{{/* MLflow as reached from inside the cluster. */}}
{{- define "claimops.mlflowUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "claimops.mlflowName" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}

{{/* Host headers MLflow accepts: its Service names (with and without port), localhost, extras. */}}
{{- define "claimops.mlflowAllowedHosts" -}}
{{- $svc := include "claimops.mlflowName" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list }}
{{- range (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) "localhost" "127.0.0.1") }}
{{- $hosts = append $hosts . }}
{{- $hosts = append $hosts (printf "%s:*" .) }}
{{- end }}
{{- $hosts = concat $hosts .Values.mlflow.allowedHosts }}
{{- join "," $hosts }}
{{- end }}

{{/* Logins the UI impersonates. */}}
{{- define "claimops.uiUsers" -}}
{{- $users := list .Values.ui.admin.username }}
{{- range .Values.ui.extraUsers }}{{ $users = append $users .username }}{{ end }}
{{- toJson $users }}
{{- end }}

{{/*
A generated secret value kept across upgrades: (dict "ctx" $ "secret" NAME "key" KEY "value" GIVEN "length" N).
Given value > value already in the cluster > random.
*/}}
{{- define "claimops.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing (index ($existing.data | default dict) .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The restricted Pod Security context of every pod and container. */}}
{{- define "claimops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "claimops.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "claimops.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Fails the render when a value combination cannot work. */}}
{{- define "claimops.validate" -}}
{{- if and (eq .Values.mlflow.backend "embedded") (gt (int .Values.mlflow.replicas) 1) }}
{{- fail "mlflow.replicas must be 1 with mlflow.backend=embedded (SQLite on a ReadWriteOnce volume)" }}
{{- end }}
{{- if eq (int .Values.ui.service.port) (int .Values.ui.service.apiPort) }}
{{- fail "ui.service.port and ui.service.apiPort must differ" }}
{{- end }}
{{- $le := .Values.operator.leaderElection }}
{{- if and (not $le.enabled) (gt (int .Values.operator.replicas) 1) }}
{{- fail "operator.replicas > 1 needs operator.leaderElection.enabled=true (two operators without a leader would both reconcile)" }}
{{- end }}
{{- if not (and (lt (int $le.retryPeriodSeconds) (int $le.renewDeadlineSeconds)) (lt (int $le.renewDeadlineSeconds) (int $le.leaseDurationSeconds))) }}
{{- fail "operator.leaderElection needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" }}
{{- end }}
{{- if and .Values.minio.rootPassword (lt (len .Values.minio.rootPassword) 8) }}
{{- fail "minio.rootPassword must have at least 8 characters" }}
{{- end }}
{{- end }}

{{/* What the operator may do (ClusterRole when cluster-wide, else a Role per watched namespace). */}}
{{- define "claimops.operatorRules" -}}
- apiGroups: ["claimops.io"]
  resources: ["pipelineruns"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["claimops.io"]
  resources: ["pipelineruns/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["claimops.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["claimops.io"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
