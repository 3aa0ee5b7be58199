{{/* The release's base name for every object. */}}
{{- define "faultline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "faultline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one role: pass (list $ "gateway"). */}}
{{- define "faultline.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "faultline.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "faultline.secretName" -}}
{{ .Values.secret.existingSecret | default (include "faultline.fullname" .) }}
{{- end -}}

{{/* Where the Secret's files are mounted. */}}
{{- define "faultline.secretDir" -}}/etc/faultline/secret{{- end -}}

{{/*
The settings every role reads, as the ConfigMap's data. Listeners bind every
interface: a pod's loopback is unreachable from outside it.
*/}}
{{- define "faultline.config" -}}
{{- $dir := include "faultline.secretDir" . -}}
{{- $c := dict
  "FAULTLINE_NATS_URL" .Values.nats.url
  "FAULTLINE_NATS_REPLICAS" (toString .Values.nats.replicas)
  "FAULTLINE_CLICKHOUSE_ADDR" .Values.clickhouse.addr
  "FAULTLINE_CLICKHOUSE_DATABASE" .Values.clickhouse.database
  "FAULTLINE_CLICKHOUSE_USER" .Values.clickhouse.user
  "FAULTLINE_CLICKHOUSE_TLS" (toString .Values.clickhouse.tls)
  "FAULTLINE_ADMIN_LISTEN" (printf "0.0.0.0:%v" .Values.admin.port)
  "FAULTLINE_GATEWAY_LISTEN" "0.0.0.0:4318"
  "FAULTLINE_GATEWAY_GRPC_LISTEN" "0.0.0.0:4317"
  "FAULTLINE_UI_LISTEN" (ternary (printf "0.0.0.0:%v" .Values.correlator.ui.port) "" .Values.correlator.ui.enabled)
  "FAULTLINE_WEBHOOK_URL" .Values.webhook.url
-}}
{{- if .Values.nats.user }}{{ $_ := set $c "FAULTLINE_NATS_USER" .Values.nats.user }}{{ end -}}
{{- if .Values.nats.creds }}{{ $_ := set $c "FAULTLINE_NATS_CREDS" (printf "%s/nats.creds" $dir) }}{{ end -}}
{{- if .Values.nats.tlsCA }}{{ $_ := set $c "FAULTLINE_NATS_TLS_CA" (printf "%s/nats-ca.crt" $dir) }}{{ end -}}
{{- if .Values.clickhouse.tlsCA }}{{ $_ := set $c "FAULTLINE_CLICKHOUSE_TLS_CA" (printf "%s/clickhouse-ca.crt" $dir) }}{{ end -}}
{{- if .Values.clickhouse.cluster }}{{ $_ := set $c "FAULTLINE_CLICKHOUSE_CLUSTER" .Values.clickhouse.cluster }}{{ end -}}
{{- if .Values.webhook.baseURL }}{{ $_ := set $c "FAULTLINE_WEBHOOK_BASE_URL" .Values.webhook.baseURL }}{{ end -}}
{{- range $k, $v := .Values.settings }}{{ $_ := set $c $k (toString $v) }}{{ end -}}
{{- range $k, $v := $c }}
{{ $k }}: {{ $v | quote }}
{{- end -}}
{{- end -}}

{{/* The chart's Secret's data: only the values given. */}}
{{- define "faultline.secretData" -}}
{{- $s := .Values.secret -}}
{{- $d := dict -}}
{{- if $s.gatewayToken }}{{ $_ := set $d "FAULTLINE_GATEWAY_TOKEN" $s.gatewayToken }}{{ end -}}
{{- if $s.clickhousePassword }}{{ $_ := set $d "FAULTLINE_CLICKHOUSE_PASSWORD" $s.clickhousePassword }}{{ end -}}
{{- if $s.webhookSecret }}{{ $_ := set $d "FAULTLINE_WEBHOOK_SECRET" $s.webhookSecret }}{{ end -}}
{{- if $s.natsPassword }}{{ $_ := set $d "FAULTLINE_NATS_PASSWORD" $s.natsPassword }}{{ end -}}
{{- if $s.natsToken }}{{ $_ := set $d "FAULTLINE_NATS_TOKEN" $s.natsToken }}{{ end -}}
{{- if $s.adminToken }}{{ $_ := set $d "FAULTLINE_ADMIN_TOKEN" $s.adminToken }}{{ end -}}
{{- if $s.uiToken }}{{ $_ := set $d "FAULTLINE_UI_TOKEN" $s.uiToken }}{{ end -}}
{{- if $s.natsCreds }}{{ $_ := set $d "nats.creds" $s.natsCreds }}{{ end -}}
{{- if $s.natsCA }}{{ $_ := set $d "nats-ca.crt" $s.natsCA }}{{ end -}}
{{- if $s.clickhouseCA }}{{ $_ := set $d "clickhouse-ca.crt" $s.clickhouseCA }}{{ end -}}
{{- range $k, $v := $d }}
{{ $k }}: {{ $v | b64enc | quote }}
{{- end -}}
{{- end -}}

{{/* A role's own Secret's data (secret.roles.<role>). */}}
{{- define "faultline.roleSecretData" -}}
{{- $r := .r -}}
{{- $d := dict -}}
{{- if $r.natsPassword }}{{ $_ := set $d "FAULTLINE_NATS_PASSWORD" $r.natsPassword }}{{ end -}}
{{- if $r.natsCreds }}{{ $_ := set $d "nats.creds" $r.natsCreds }}{{ end -}}
{{- range $k, $v := $d }}
{{ $k }}: {{ $v | b64enc | quote }}
{{- end -}}
{{- end -}}

{{/* The name of a role's own Secret, or "" when it has none. */}}
{{- define "faultline.roleSecretName" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- if hasKey $.Values.secret.existingRoleSecrets $role -}}
{{ index $.Values.secret.existingRoleSecrets $role }}
{{- else if hasKey $.Values.secret.roles $role -}}
{{ include "faultline.fullname" $ }}-{{ $role }}
{{- end -}}
{{- end -}}

{{/* Mistakes that would stop every pod at start, refused at render time. */}}
{{- define "faultline.validate" -}}
{{- if not .Values.nats.url }}{{ fail "nats.url: faultline joins an existing NATS JetStream; set its URL" }}{{ end -}}
{{- if not .Values.clickhouse.addr }}{{ fail "clickhouse.addr: set the ClickHouse address (host:9000)" }}{{ end -}}
{{- if not .Values.secret.existingSecret -}}
{{- if and .Values.nats.creds (not .Values.secret.natsCreds) (not .Values.secret.roles) (not .Values.secret.existingRoleSecrets) }}{{ fail "nats.creds is true: set secret.natsCreds (the credentials file) or secret.existingSecret" }}{{ end -}}
{{- if and .Values.nats.tlsCA (not .Values.secret.natsCA) }}{{ fail "nats.tlsCA is true: set secret.natsCA or secret.existingSecret" }}{{ end -}}
{{- if and .Values.clickhouse.tlsCA (not .Values.secret.clickhouseCA) }}{{ fail "clickhouse.tlsCA is true: set secret.clickhouseCA or secret.existingSecret" }}{{ end -}}
{{- if and .Values.webhook.url (not .Values.secret.webhookSecret) }}{{ fail "webhook.url is set: set secret.webhookSecret too (alerts are signed with it)" }}{{ end -}}
{{- end -}}
{{- end -}}

{{/*
A pod template for one role: pass (dict "ctx" $ "role" "gateway" "values"
.Values.gateway "ports" (list ...) "config" NAME "secret" NAME).
*/}}
{{- define "faultline.pod" -}}
{{- $ := .ctx -}}
metadata:
  labels:
    {{- include "faultline.selector" (list $ .role) | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "faultline.config" $ | sha256sum }}
    checksum/secret: {{ include "faultline.secretData" $ | sha256sum }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if .job }}
  restartPolicy: OnFailure
  {{- end }}
  {{- with .values.terminationGracePeriodSeconds }}
  terminationGracePeriodSeconds: {{ . }}
  {{- end }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .role }}
      image: {{ include "faultline.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args: [{{ .role | quote }}]
      envFrom:
        - configMapRef: {name: {{ .config }}}
        - secretRef: {name: {{ .secret }}}
        {{- with .roleSecret }}
        - secretRef: {name: {{ . }}}
        {{- end }}
      {{- $env := deepCopy (.values.env | default dict) -}}
      {{- with index $.Values.nats.users .role }}{{ $_ := set $env "FAULTLINE_NATS_USER" . }}{{ end -}}
      {{- if and .roleSecret $.Values.nats.creds -}}
      {{- /* The role's own credentials file, and no shared user. */ -}}
      {{- $_ := set $env "FAULTLINE_NATS_CREDS" "/etc/faultline/role/nats.creds" -}}
      {{- $_ := set $env "FAULTLINE_NATS_USER" "" -}}
      {{- $_ := set $env "FAULTLINE_NATS_PASSWORD" "" -}}
      {{- end }}
      {{- /* Go schedules on as many threads as the CPU request (rounded
      up), not as the node has cores: waking idle threads for every
      request cost the gateway a fifth of its CPU (docs/operations.md).
      A GOMAXPROCS in the role's env wins. */ -}}
      {{- $procs := and (not .job) (not (hasKey $env "GOMAXPROCS")) (dig "requests" "cpu" "" (.values.resources | default dict)) -}}
      {{- if or $env $procs }}
      env:
        {{- range $k, $v := $env }}
        - name: {{ $k }}
          value: {{ $v | toString | quote }}
        {{- end }}
        {{- if $procs }}
        - name: GOMAXPROCS
          valueFrom:
            resourceFieldRef: {resource: requests.cpu, divisor: "1"}
        {{- end }}
      {{- end }}
      {{- if not .job }}
      ports:
        - {name: admin, containerPort: {{ $.Values.admin.port }}}
        {{- range .ports }}
        - {name: {{ .name }}, containerPort: {{ .port }}}
        {{- end }}
      readinessProbe:
        httpGet: {path: /readyz, port: admin}
        periodSeconds: 10
      livenessProbe:
        httpGet: {path: /healthz, port: admin}
        periodSeconds: 10
        failureThreshold: 6
      {{- end }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .values.resources | nindent 8 }}
      volumeMounts:
        - {name: secret, mountPath: {{ include "faultline.secretDir" $ }}, readOnly: true}
        {{- if .roleSecret }}
        - {name: role-secret, mountPath: /etc/faultline/role, readOnly: true}
        {{- end }}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: secret
      secret: {secretName: {{ .secret }}}
    {{- with .roleSecret }}
    - name: role-secret
      secret: {secretName: {{ . }}}
    {{- end }}
    - name: tmp
      emptyDir: {}
  {{- with $.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
