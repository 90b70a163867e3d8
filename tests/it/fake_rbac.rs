//! RBAC for the fake API server, evaluated as kube-apiserver's RBAC authorizer does: the
//! Roles, ClusterRoles, RoleBindings and ClusterRoleBindings stored in the fake, with
//! apiGroups, resources (and `resource/subresource`), verbs, resourceNames, nonResourceURLs
//! and `*` wildcards. A ClusterRole with an `aggregationRule` holds the union of the rules of
//! the ClusterRoles its `clusterRoleSelectors` select (matchLabels and matchExpressions), as
//! kube-controller-manager's aggregation controller fills it in; its own `rules` are ignored,
//! as the controller overwrites them. Besides the stored objects, every authenticated user holds what the bootstrap
//! policy gives `system:authenticated`: discovery (`system:discovery`) and the self reviews
//! (`system:basic-user`).

use serde_json::{json, Value};

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// `name` with `groups` and `system:authenticated`, as the token authenticator adds it.
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if let Some(sa) = name.strip_prefix("system:serviceaccount:") {
            let ns = sa.split(':').next().unwrap_or_default();
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        groups.push("system:authenticated".into());
        UserInfo {
            name: name.into(),
            groups,
        }
    }
}

/// What a request asks to do (kube-apiserver's `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// `None` for a non-resource request (discovery).
    pub resource: Option<ResourceAttributes>,
    /// The path of a non-resource request.
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub group: String,
    /// `configmaps`, or `pods/status` with its subresource.
    pub resource: String,
    /// Empty for cluster-scoped requests and requests across all namespaces.
    pub namespace: String,
    /// Empty for create and for lists not narrowed to one name.
    pub name: String,
}

/// Whether `user` may do `attrs` under the RBAC objects in `objects`.
pub fn allowed(objects: &[Value], user: &UserInfo, attrs: &Attributes) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let authenticated = user.groups.iter().any(|g| g == "system:authenticated");
    if authenticated
        && bootstrap_rules()
            .iter()
            .any(|rule| rule_allows(rule, attrs))
    {
        return true;
    }
    let namespace = attrs
        .resource
        .as_ref()
        .map(|r| r.namespace.as_str())
        .unwrap_or_default();
    bound_rules(objects, user, namespace)
        .iter()
        .any(|rule| rule_allows(rule, attrs))
}

/// What `system:discovery` and `system:basic-user` give every authenticated user.
fn bootstrap_rules() -> Vec<Value> {
    vec![
        json!({"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version", "/healthz"], "verbs": ["get"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}),
    ]
}

/// The rules of every role bound to `user`: cluster-wide by ClusterRoleBindings, and in
/// `namespace` by its RoleBindings.
fn bound_rules(objects: &[Value], user: &UserInfo, namespace: &str) -> Vec<Value> {
    let find = |kind: &str, ns: &str, name: &str| {
        objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or_default() == ns
        })
    };
    let mut rules = Vec::new();
    for binding in objects.iter().filter(|o| {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        o["kind"] == "ClusterRoleBinding"
            || (o["kind"] == "RoleBinding" && ns == namespace && !ns.is_empty())
    }) {
        let ns = binding["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        if !binds(binding, user, ns) {
            continue;
        }
        let role_ref = &binding["roleRef"];
        let name = role_ref["name"].as_str().unwrap_or_default();
        let role = match role_ref["kind"].as_str() {
            Some("ClusterRole") => find("ClusterRole", "", name),
            Some("Role") => find("Role", ns, name),
            _ => None,
        };
        if let Some(role) = role {
            rules.extend(role_rules(objects, role, 0));
        }
    }
    rules
}

/// Aggregated roles may select aggregated roles; deeper than this is a loop.
const MAX_AGGREGATION_DEPTH: usize = 8;

/// A role's rules: its own, or for an aggregated ClusterRole the union of the selected ones'.
fn role_rules(objects: &[Value], role: &Value, depth: usize) -> Vec<Value> {
    let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
        return role["rules"].as_array().cloned().unwrap_or_default();
    };
    if depth >= MAX_AGGREGATION_DEPTH {
        return Vec::new();
    }
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] != role["metadata"]["name"])
        .filter(|o| {
            selectors
                .iter()
                .any(|s| selects(s, &o["metadata"]["labels"]))
        })
        .flat_map(|o| role_rules(objects, o, depth + 1))
        .collect()
}

/// Whether a label selector selects `labels` (an empty one selects every role, as
/// `metav1.LabelSelectorAsSelector` makes it).
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels[k].as_str();
    let match_labels = selector["matchLabels"].as_object();
    let expressions = selector["matchExpressions"].as_array();
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let expressions_ok = expressions.into_iter().flatten().all(|e| {
        let value = label(e["key"].as_str().unwrap_or_default());
        let values = strings(&e["values"]);
        match e["operator"].as_str() {
            Some("In") => value.is_some_and(|v| values.contains(&v)),
            Some("NotIn") => value.is_none_or(|v| !values.contains(&v)),
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Whether one of `binding`'s subjects is `user` (a ServiceAccount subject without a namespace
/// takes the RoleBinding's).
fn binds(binding: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str() {
            Some("User") => user.name == name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let ns = s["namespace"].as_str().unwrap_or(binding_ns);
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One PolicyRule against one request, as `rbac.RuleAllows`.
fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let verbs = strings(&rule["verbs"]);
    if !verbs.iter().any(|v| *v == "*" || *v == attrs.verb) {
        return false;
    }
    let Some(r) = &attrs.resource else {
        return strings(&rule["nonResourceURLs"]).iter().any(|u| {
            *u == "*"
                || *u == attrs.path
                || u.strip_suffix('*')
                    .is_some_and(|p| attrs.path.starts_with(p))
        });
    };
    let groups = strings(&rule["apiGroups"]);
    if !groups.iter().any(|g| *g == "*" || *g == r.group) {
        return false;
    }
    let resources = strings(&rule["resources"]);
    let subresource = r.resource.split_once('/').map(|(_, s)| s);
    let resource_ok = resources.iter().any(|res| {
        *res == "*" || *res == r.resource || subresource.is_some_and(|s| *res == format!("*/{s}"))
    });
    let names = strings(&rule["resourceNames"]);
    resource_ok && (names.is_empty() || names.contains(&r.name.as_str()))
}

/// kube-apiserver's 403 Status for a request RBAC refused.
pub fn forbidden(user: &UserInfo, attrs: &Attributes) -> Value {
    let Some(r) = &attrs.resource else {
        return json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("forbidden: User \"{}\" cannot {} path \"{}\"", user.name, attrs.verb, attrs.path),
            "reason": "Forbidden", "details": {}, "code": 403});
    };
    let (plural, sub) = match r.resource.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (r.resource.as_str(), None),
    };
    let qualified = if r.group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{}", r.group)
    };
    let subject = if r.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", r.name)
    };
    let what = match sub {
        Some(s) => format!("resource \"{plural}/{s}\""),
        None => format!("resource \"{plural}\""),
    };
    let scope = if r.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", r.namespace)
    };
    let mut details = json!({"kind": plural});
    if !r.name.is_empty() {
        details["name"] = json!(r.name);
    }
    if !r.group.is_empty() {
        details["group"] = json!(r.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{subject} is forbidden: User \"{}\" cannot {} {what} in API group \"{}\" {scope}", user.name, attrs.verb, r.group),
        "reason": "Forbidden", "details": details, "code": 403})
}

/// The answer to a SubjectAccessReview `review`, judged from `objects`.
pub fn subject_access_review(objects: &[Value], review: &Value) -> Value {
    let spec = &review["spec"];
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let groups: Vec<&str> = strings(&spec["groups"]);
    let mut user = UserInfo::new(&s("/user"), &groups);
    // A review names the groups itself: nothing is added but what it sends.
    user.groups = groups.iter().map(|g| g.to_string()).collect();
    let attrs = if spec["resourceAttributes"].is_object() {
        let sub = s("/resourceAttributes/subresource");
        let mut resource = s("/resourceAttributes/resource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        Attributes {
            verb: s("/resourceAttributes/verb"),
            resource: Some(ResourceAttributes {
                group: s("/resourceAttributes/group"),
                resource,
                namespace: s("/resourceAttributes/namespace"),
                name: s("/resourceAttributes/name"),
            }),
            path: String::new(),
        }
    } else {
        Attributes {
            verb: s("/nonResourceAttributes/verb"),
            resource: None,
            path: s("/nonResourceAttributes/path"),
        }
    };
    let ok = allowed(objects, &user, &attrs);
    let mut answer = review.clone();
    answer["status"] = if ok {
        json!({"allowed": true, "reason": "RBAC: allowed by a binding"})
    } else {
        json!({"allowed": false})
    };
    answer
}

/// The answer to a SelfSubjectReview from `user`.
pub fn self_subject_review(user: &UserInfo) -> Value {
    json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}}})
}

/// The verb of a resource request, as kube-apiserver's RequestInfo names it.
pub fn verb(method: &axum::http::Method, named: bool, watch: bool) -> &'static str {
    use axum::http::Method;
    match (method.clone(), named) {
        (Method::GET, _) if watch => "watch",
        (Method::GET, true) => "get",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// The name a list or watch is narrowed to by `fieldSelector=metadata.name=X`: kube-apiserver
/// authorises such a request as one on X, so a rule with resourceNames can allow it.
pub fn selected_name(field_selector: Option<&String>) -> String {
    let Some(sel) = field_selector else {
        return String::new();
    };
    let terms: Vec<&str> = sel.split(',').filter(|t| !t.trim().is_empty()).collect();
    terms
        .iter()
        .find_map(|t| {
            let t = t.trim();
            t.strip_prefix("metadata.name==")
                .or_else(|| t.strip_prefix("metadata.name="))
        })
        .map(str::to_string)
        .unwrap_or_default()
}
