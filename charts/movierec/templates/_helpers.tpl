{{/*
Names, labels, images and the addresses components give each other.
*/}}

{{- define "movierec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, helm create's rule: <release>-<chart> unless the release name
already contains the chart name. Truncated so that "-<component>" suffixes stay under 63.
*/}}
{{- define "movierec.fullname" -}}
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

{{- define "movierec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's objects: include "movierec.componentName" (list . "router") */}}
{{- define "movierec.componentName" -}}
{{- printf "%s-%s" (include "movierec.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include "movierec.selectorLabels" (list . "router") */}}
{{- define "movierec.selectorLabels" -}}
{{- $ctx := index . 0 }}
app.kubernetes.io/name: {{ include "movierec.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Every label of one component: include "movierec.labels" (list . "router") */}}
{{- define "movierec.labels" -}}
{{- $ctx := index . 0 }}
helm.sh/chart: {{ include "movierec.chart" $ctx }}
{{ include "movierec.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: movierec
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The application image. */}}
{{- define "movierec.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* An infrastructure image from its values block: include "movierec.infraImage" .Values.kafka.image */}}
{{- define "movierec.infraImage" -}}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}

{{- define "movierec.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod-level security of the movierec pods. */}}
{{- define "movierec.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Pod-level security of an infrastructure pod running as its image's own user:
include "movierec.infraPodSecurityContext" .Values.postgresql.securityContext */}}
{{- define "movierec.infraPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "movierec.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* The writable /tmp every container gets on a read-only root filesystem. */}}
{{- define "movierec.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "movierec.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Environment every movierec container shares. */}}
{{- define "movierec.commonEnv" -}}
- name: HOME
  value: /tmp
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "1"
# progress bars are noise in pod logs
- name: MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
  value: "false"
{{- end }}

{{/* preStop on HTTP servers: kube-proxy stops sending before the server closes its socket. */}}
{{- define "movierec.preStop" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.preStopSleepSeconds }}
{{- end }}

{{/* ---- addresses ---------------------------------------------------------------------- */}}

{{- define "movierec.mlflowUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%v" (include "movierec.componentName" (list . "mlflow")) .Values.mlflow.port }}
{{- else }}
{{- required "mlflow.enabled is false: set externalMlflow.trackingUri" .Values.externalMlflow.trackingUri }}
{{- end }}
{{- end }}

{{- define "movierec.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s.%s.svc:9092" (include "movierec.componentName" (list . "kafka")) .Release.Namespace }}
{{- else }}
{{- required "kafka.enabled is false: set externalKafka.bootstrapServers" .Values.externalKafka.bootstrapServers }}
{{- end }}
{{- end }}

{{- define "movierec.prometheusUrl" -}}
{{- if .Values.prometheus.enabled }}
{{- printf "http://%s:9090" (include "movierec.componentName" (list . "prometheus")) }}
{{- else }}
{{- required "prometheus.enabled is false: set externalPrometheus.url (the operator's analysis reads it)" .Values.externalPrometheus.url }}
{{- end }}
{{- end }}

{{- define "movierec.pushgatewayUrl" -}}
{{- if .Values.pushgateway.enabled }}
{{- printf "http://%s:9091" (include "movierec.componentName" (list . "pushgateway")) }}
{{- end }}
{{- end }}

{{/* Secret and keys holding the database URLs. */}}
{{- define "movierec.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- include "movierec.componentName" (list . "postgresql") }}
{{- else }}
{{- required "postgresql.enabled is false: set externalDatabase.existingSecret" .Values.externalDatabase.existingSecret }}
{{- end }}
{{- end }}

{{- define "movierec.databaseUrlKey" -}}
{{- if .Values.postgresql.enabled }}url{{ else }}{{ .Values.externalDatabase.urlKey }}{{ end }}
{{- end }}

{{- define "movierec.mlflowDatabaseUrlKey" -}}
{{- if .Values.postgresql.enabled }}mlflow-url{{ else }}{{ .Values.externalDatabase.mlflowUrlKey }}{{ end }}
{{- end }}

{{/* MOVIEREC_DATABASE_URL from the Secret, for `--db $(MOVIEREC_DATABASE_URL)`. */}}
{{- define "movierec.databaseEnv" -}}
- name: MOVIEREC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "movierec.databaseSecret" . }}
      key: {{ include "movierec.databaseUrlKey" . }}
{{- end }}

{{- define "movierec.recommenderModelName" -}}
{{- default (include "movierec.fullname" .) .Values.recommenderModel.name }}
{{- end }}

{{- define "movierec.recommenderImage" -}}
{{- .Values.recommenderModel.image | default .Values.operator.recommenderImage | default (include "movierec.image" .) }}
{{- end }}

{{/* The KRaft cluster id: 16 bytes as unpadded base64url, stable for a release in a namespace. */}}
{{- define "movierec.kafkaClusterId" -}}
{{- if .Values.kafka.clusterId }}
{{- .Values.kafka.clusterId }}
{{- else }}
{{- printf "%s/%s" .Release.Namespace .Release.Name | sha256sum | trunc 16 | b64enc | trimSuffix "==" | replace "+" "-" | replace "/" "_" }}
{{- end }}
{{- end }}

{{/* Scheduling fields of a component: include "movierec.scheduling" .Values.router */}}
{{- define "movierec.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "movierec.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "movierec.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ingestor's container, shared by the CronJob and the continuous Deployment. */}}
{{- define "movierec.ingestorContainer" -}}
{{- $i := .Values.ingestor }}
- name: ingestor
  image: {{ include "movierec.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - movierec
    - ingest
    - --source
    - {{ printf "kafka://%s/%s" (include "movierec.kafkaBootstrap" .) (join "," (compact (list $i.topic $i.provenanceTopic))) | quote }}
    - --group
    - {{ $i.group | quote }}
    - --batch-size
    - {{ $i.batchSize | quote }}
    {{- if eq $i.mode "cronjob" }}
    - --until-caught-up
    - --max-seconds
    - {{ $i.maxSeconds | quote }}
    {{- if .Values.pushgateway.enabled }}
    - --pushgateway
    - {{ include "movierec.pushgatewayUrl" . | quote }}
    {{- end }}
    {{- else }}
    - --metrics-port
    - {{ $i.metricsPort | quote }}
    {{- end }}
  env:
    {{- include "movierec.commonEnv" . | nindent 4 }}
    # the database URL holds a password: from the Secret, never on the command line
    - name: MOVIEREC_INGESTOR_DB_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "movierec.databaseSecret" . }}
          key: {{ include "movierec.databaseUrlKey" . }}
    - name: MOVIEREC_INGESTOR_METRICS_ADDR
      value: 0.0.0.0
    {{- with $i.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if ne $i.mode "cronjob" }}
  ports:
    - name: metrics
      containerPort: {{ $i.metricsPort }}
  livenessProbe:
    httpGet:
      path: /metrics
      port: metrics
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 6
  readinessProbe:
    httpGet:
      path: /metrics
      port: metrics
    periodSeconds: 10
  {{- end }}
  resources:
    {{- toYaml $i.resources | nindent 4 }}
  securityContext:
    {{- include "movierec.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "movierec.tmpMount" . | nindent 4 }}
{{- end }}
