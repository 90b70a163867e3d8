{{/*
Values the schema cannot explain: each refusal says what to set and why. The schema keeps the
closed structure (a misspelt key, a wrong enum); everything an operator is likely to get wrong
in a way a JSON-schema message would not explain is refused here, at render, by
"rancher-remap.validate" (included by deployment.yaml, which every install renders).
*/}}
{{- define "rancher-remap.validate" -}}
{{- $v := .Values }}
{{- $label := "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" }}
{{- /* image */}}
{{- if not $v.image.repository }}
{{- include "rancher-remap.refuse" "image.repository is required: set it to where you pushed the rancher-remap image, e.g. --set image.repository=registry.example.com/rancher-remap (the tag is image.tag, default the chart's appVersion). There is no default because a webhook whose image cannot be pulled refuses migrated writes." }}
{{- end }}
{{- $last := $v.image.repository | splitList "/" | last }}
{{- $bare := trimSuffix (regexReplaceAll "^[^:@]*" $last "") $v.image.repository }}
{{- if contains "@" $last }}
{{- include "rancher-remap.refuse" (printf "image.repository %q carries a digest: set the repository alone and the version as image.tag, e.g. --set image.repository=%s --set image.tag=%s" $v.image.repository $bare .Chart.AppVersion) }}
{{- else if contains ":" $last }}
{{- include "rancher-remap.refuse" (printf "image.repository %q carries a tag: set the repository alone and the tag as image.tag, e.g. --set image.repository=%s --set image.tag=%s" $v.image.repository $bare (regexReplaceAll "^[^:]*:" $last "")) }}
{{- end }}
{{- /* this cluster's ID */}}
{{- if and (eq $v.role "destination") (not $v.clusterId) }}
{{- include "rancher-remap.refuse" "clusterId is required with role=destination: set it to this cluster's Rancher ID, e.g. --set clusterId=c-m-4kq8z9rt (`rancher-remap derive` prints it). Without it the webhook cannot tell this cluster's Namespaces from migrated ones, nor refuse a table made for another cluster." }}
{{- end }}
{{- if and $v.clusterId (not (regexMatch $label $v.clusterId)) }}
{{- include "rancher-remap.refuse" (printf "clusterId %q is not a Rancher cluster ID: give the ID alone (a DNS-1123 label such as c-m-4kq8z9rt or local), without a project part or upper-case letters" $v.clusterId) }}
{{- end }}
{{- if and (ne $v.rewrite "webhook") (ne $v.role "destination") }}
{{- include "rancher-remap.refuse" (printf "rewrite=%s needs role=destination: the policies rewrite migrated objects, which only the destination does" $v.rewrite) }}
{{- end }}
{{- /* certificates */}}
{{- if and $v.certManager.enabled $v.tls.existingSecret }}
{{- include "rancher-remap.refuse" (printf "certManager.enabled=true and tls.existingSecret=%s are two ways to get the serving certificate: choose one (unset tls.existingSecret to let cert-manager issue it, or set certManager.enabled=false to use your Secret)" $v.tls.existingSecret) }}
{{- end }}
{{- if and $v.tls.existingSecret (not $v.tls.caBundle) }}
{{- include "rancher-remap.refuse" (printf "tls.caBundle is required with tls.existingSecret=%s: the API server must trust the CA that signed that Secret's certificate; set the base64 of its PEM, e.g. --set tls.caBundle=$(base64 -w0 ca.crt)" $v.tls.existingSecret) }}
{{- end }}
{{- with $v.tls.caBundle }}
{{- if contains "-----BEGIN" . }}
{{- include "rancher-remap.refuse" "tls.caBundle holds PEM text: it takes the CA certificate's PEM base64-encoded, as a caBundle field does; base64-encode it, e.g. --set tls.caBundle=$(base64 -w0 ca.crt)" }}
{{- end }}
{{- if or (not (regexMatch "^[A-Za-z0-9+/]+={0,2}$" .)) (not (contains "-----BEGIN CERTIFICATE-----" (b64dec .))) }}
{{- include "rancher-remap.refuse" "tls.caBundle is not the base64 of a PEM certificate: base64-encode the CA certificate's PEM file, e.g. --set tls.caBundle=$(base64 -w0 ca.crt)" }}
{{- end }}
{{- end }}
{{- /* inline mappings: the same entry syntax the server parses (storkctl's --project-mappings) */}}
{{- $id := "[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?" }}
{{- $entry := printf "^%s(?::%s)?[ \t]*=[ \t]*%s(?::%s)?$" $id $id $id $id }}
{{- $colon := printf "^(%s(?::%s)?):[ \t]+(%s(?::%s)?)$" $id $id $id $id }}
{{- range $key, $text := $v.mappings.inline }}
{{- if not (trim $text) }}
{{- include "rancher-remap.refuse" (printf "mappings.inline.%s has no entries: give src=dst entries such as p-a=p-b,c-1:p-a=c-2:p-b (an empty table would remove every project ID from migrated objects)" $key) }}
{{- end }}
{{- range $line := splitList "\n" $text }}
{{- if trim $line }}
{{- range $e := splitList "," $line }}
{{- $e = trim $e }}
{{- if not $e }}
{{- include "rancher-remap.refuse" (printf "mappings.inline.%s has an empty entry (a trailing or doubled comma): separate src=dst entries with one comma, e.g. p-a=p-b,p-c=p-d" $key) }}
{{- else if regexMatch $colon $e }}
{{- include "rancher-remap.refuse" (printf "mappings.inline.%s: entry %q has no '=': did you mean %q? Entries are src=dst, as storkctl's --project-mappings" $key $e (regexReplaceAll $colon $e "${1}=${2}")) }}
{{- else if not (regexMatch $entry $e) }}
{{- include "rancher-remap.refuse" (printf "mappings.inline.%s: entry %q is not src=dst with project IDs (p-a=p-b) or cluster:project IDs (c-1:p-a=c-2:p-b) in lower case" $key $e) }}
{{- else if ne (contains ":" (regexReplaceAll "=.*$" $e "")) (contains ":" (regexReplaceAll "^.*=" $e "")) }}
{{- include "rancher-remap.refuse" (printf "mappings.inline.%s: entry %q maps a value of one form to the other: map p-a=p-b and c-1:p-a=c-2:p-b, each side of the same form" $key $e) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The objects of values policy (export-policy's output, a YAML stream), as a JSON list, once each
is checked: exactly the two MutatingAdmissionPolicies and two bindings export-policy prints,
each annotated by it, exported for this clusterId and for the release namespace (which the
policies leave out, as the webhook leaves out its own). Helm cannot run export-policy, which
checked the table (the checks of `rancher-remap check --cluster-id`): its annotation says so.
What is checked here is which objects these are and whom they were exported for (and that
the bindings bind only their own policy, the policies fail closed and leave namespaces out), not
what their CEL does: a MutatingAdmissionPolicy can change any object it matches, so this value
is as powerful as cluster-admin. Give it only what export-policy printed.
*/}}
{{- define "rancher-remap.policyObjects" -}}
{{- $v := .Values }}
{{- $how := printf "rancher-remap export-policy --mappings-file mappings.yaml --cluster-id %s -n %s > policy.yaml, then --set-file policy=policy.yaml" ($v.clusterId | default "ID") .Release.Namespace }}
{{- if not (trim $v.policy) }}
{{- include "rancher-remap.refuse" (printf "rewrite=%s needs policy: the YAML export-policy prints. Make it with %s" $v.rewrite $how) }}
{{- end }}
{{- if and $v.mappings.inline (eq $v.rewrite "policy") }}
{{- include "rancher-remap.refuse" "mappings.inline is the webhook's table, and with rewrite=policy nothing reads it: the policies hold their own table (export-policy's output, values policy). Unset mappings.inline" }}
{{- end }}
{{- $want := list "MutatingAdmissionPolicy/rancher-remap-metadata" "MutatingAdmissionPolicy/rancher-remap-workloads" "MutatingAdmissionPolicyBinding/rancher-remap-metadata" "MutatingAdmissionPolicyBinding/rancher-remap-workloads" }}
{{- $objects := list }}
{{- $got := list }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $v.policy -1 }}
{{- $o := fromYaml $doc }}
{{- if hasKey $o "Error" }}
{{- include "rancher-remap.refuse" (printf "policy is not YAML (%s): give export-policy's output unchanged, e.g. %s" $o.Error $how) }}
{{- end }}
{{- if $o }}
{{- $id := printf "%s/%s" ($o.kind | default "?") (dig "metadata" "name" "?" $o) }}
{{- $annotations := dig "metadata" "annotations" dict $o }}
{{- if or (ne ($o.apiVersion | default "") "admissionregistration.k8s.io/v1") (not (has $id $want)) (has $id $got) (not (hasKey $annotations "rancher-remap.io/export-policy")) }}
{{- include "rancher-remap.refuse" (printf "policy holds %s (%s), which is not one of the objects rancher-remap export-policy prints, or is one twice: give its output unchanged, e.g. %s" $id ($o.apiVersion | default "no apiVersion") $how) }}
{{- end }}
{{- $for := index $annotations "rancher-remap.io/cluster-id" | default "" }}
{{- if ne $for $v.clusterId }}
{{- include "rancher-remap.refuse" (printf "policy was exported for cluster %q, and clusterId is %q: export it for this cluster, %s" $for $v.clusterId $how) }}
{{- end }}
{{- if eq $o.kind "MutatingAdmissionPolicy" }}
{{- $left := list }}
{{- range (dig "spec" "matchConstraints" "namespaceSelector" "matchExpressions" list $o) }}
{{- $left = concat $left (.values | default list) }}
{{- end }}
{{- if not (has $.Release.Namespace $left) }}
{{- include "rancher-remap.refuse" (printf "policy was exported for another namespace (it leaves out %s, not the release namespace %s): export it with -n %s, %s" (join ", " $left) $.Release.Namespace $.Release.Namespace $how) }}
{{- end }}
{{- range (dig "spec" "matchConstraints" "namespaceSelector" "matchExpressions" list $o) }}
{{- if ne (.operator | default "") "NotIn" }}
{{- include "rancher-remap.refuse" (printf "policy %s selects namespaces with %s, where export-policy leaves namespaces out (NotIn): give its output unchanged, e.g. %s" $id (.operator | default "no operator") $how) }}
{{- end }}
{{- end }}
{{- if ne (dig "spec" "failurePolicy" "" $o) "Fail" }}
{{- include "rancher-remap.refuse" (printf "policy %s has failurePolicy %q, not export-policy's Fail: give its output unchanged, e.g. %s" $id (dig "spec" "failurePolicy" "" $o) $how) }}
{{- end }}
{{- else if ne (toJson (dig "spec" dict $o)) (toJson (dict "policyName" (dig "metadata" "name" "" $o))) }}
{{- include "rancher-remap.refuse" (printf "policy %s binds with more than policyName (export-policy's bindings bind their own policy everywhere it matches, nothing else): give its output unchanged, e.g. %s" $id $how) }}
{{- end }}
{{- $got = append $got $id }}
{{- $objects = append $objects $o }}
{{- end }}
{{- end }}
{{- if ne (len $got) (len $want) }}
{{- include "rancher-remap.refuse" (printf "policy holds %s, not all four objects rancher-remap export-policy prints (%s): give its whole output, e.g. %s" (join ", " $got | default "nothing") (join ", " $want) $how) }}
{{- end }}
{{- toJson $objects }}
{{- end }}

{{/* Refuses the values with the message. Under `helm lint`, `fail` only logs (Helm's lint mode,
so that charts with required values can be linted); the include of a template that does not
exist then fails the lint too, with the same message. */}}
{{- define "rancher-remap.refuse" -}}
{{- fail . }}
{{- include (printf "values refused: %s" .) dict }}
{{- end }}
