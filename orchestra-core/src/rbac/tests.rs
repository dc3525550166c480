use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use proptest::prelude::*;

use super::*;

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        ..PolicyRule::default()
    }
}

fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(strings(names)),
        ..rule(verbs, groups, resources)
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(name, Some(namespace)),
        rules: Some(rules),
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        api_group: None,
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn role_binding(namespace: &str, name: &str, to: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref: to,
        subjects: Some(subjects),
    }
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    }
}

/// An authorizer granting `rules` to user `alice` everywhere.
fn alice_with(rules: Vec<PolicyRule>) -> Authorizer {
    Authorizer::new(
        &[],
        &[cluster_role("r", rules)],
        &[],
        &[cluster_binding(
            "b",
            "r",
            vec![subject("User", "alice", None)],
        )],
    )
}

fn allowed(authorizer: &Authorizer, attributes: &Attributes) -> bool {
    authorizer.authorize(attributes).is_allowed()
}

#[test]
fn verb_group_and_resource_wildcards() {
    let a = alice_with(vec![rule(&["*"], &["*"], &["*"])]);
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "escalate", "rbac.authorization.k8s.io", "roles")
    ));
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "get", "", "pods").on_subresource("log")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("bob", "get", "", "pods")
    ));
    // No non-resource URLs in a resource rule.
    assert!(!allowed(
        &a,
        &Attributes::non_resource("alice", "get", "/healthz")
    ));

    let a = alice_with(vec![rule(&["get", "list"], &[""], &["pods"])]);
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "list", "", "pods")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "delete", "", "pods")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "apps", "pods")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "", "services")
    ));
    // `pods` does not cover its subresources.
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "", "pods").on_subresource("log")
    ));
}

#[test]
fn subresource_forms() {
    let a = alice_with(vec![
        rule(&["get"], &[""], &["pods/log"]),
        rule(&["update"], &["*"], &["*/scale"]),
        rule(&["get"], &[""], &["services/*"]),
    ]);
    let log = Attributes::resource("alice", "get", "", "pods")
        .on_subresource("log")
        .named("web-0")
        .in_namespace("default");
    assert!(allowed(&a, &log));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "", "pods").on_subresource("status")
    ));
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "update", "apps", "deployments").on_subresource("scale")
    ));
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "update", "", "replicationcontrollers")
            .on_subresource("scale")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "update", "apps", "deployments")
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "update", "apps", "deployments").on_subresource("scales")
    ));
    // As in Kubernetes, `services/*` names a subresource literally called `*`.
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "", "services").on_subresource("proxy")
    ));
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "get", "", "services").on_subresource("*")
    ));
}

#[test]
fn resource_names_need_a_named_request() {
    let a = alice_with(vec![named_rule(
        &[
            "get",
            "list",
            "watch",
            "update",
            "create",
            "deletecollection",
        ],
        &[""],
        &["configmaps"],
        &["settings"],
    )]);
    let cm = |verb: &str| Attributes::resource("alice", verb, "", "configmaps").in_namespace("ns");
    assert!(allowed(&a, &cm("get").named("settings")));
    assert!(allowed(&a, &cm("update").named("settings")));
    assert!(!allowed(&a, &cm("get").named("other")));
    for verb in ["list", "watch", "create", "deletecollection"] {
        assert!(!allowed(&a, &cm(verb)), "{verb} without a name");
    }
    // A list narrowed to the name (by a metadata.name field selector) carries the name.
    assert!(allowed(&a, &cm("list").named("settings")));
}

#[test]
fn role_binding_grants_only_in_its_namespace() {
    let a = Authorizer::new(
        &[
            role("dev", "reader", vec![rule(&["get"], &[""], &["pods"])]),
            role("prod", "writer", vec![rule(&["*"], &[""], &["pods"])]),
        ],
        &[],
        &[
            role_binding(
                "dev",
                "b",
                role_ref("Role", "reader"),
                vec![subject("User", "alice", None)],
            ),
            // A RoleBinding refers to a Role of its own namespace only.
            role_binding(
                "dev",
                "c",
                role_ref("Role", "writer"),
                vec![subject("User", "alice", None)],
            ),
        ],
        &[],
    );
    let get = Attributes::resource("alice", "get", "", "pods");
    assert!(allowed(&a, &get.clone().in_namespace("dev")));
    assert!(!allowed(&a, &get.clone().in_namespace("prod")));
    assert!(!allowed(&a, &get.clone().in_namespace("")));
    assert!(!allowed(&a, &get));
    let delete = Attributes::resource("alice", "delete", "", "pods").in_namespace("dev");
    let decision = a.authorize(&delete);
    assert_eq!(
        decision,
        Decision::NoOpinion {
            reason: r#"RBAC: role.rbac.authorization.k8s.io "writer" not found"#.to_owned()
        }
    );
    assert_eq!(a.rules_for("alice", &[], Some("dev")).len(), 1);
    assert!(a.rules_for("alice", &[], None).is_empty());
}

#[test]
fn role_binding_to_a_cluster_role() {
    let a = Authorizer::new(
        &[],
        &[cluster_role(
            "pod-admin",
            vec![
                rule(&["*"], &[""], &["pods"]),
                PolicyRule {
                    verbs: strings(&["get"]),
                    non_resource_urls: Some(strings(&["/metrics"])),
                    ..PolicyRule::default()
                },
            ],
        )],
        &[role_binding(
            "dev",
            "b",
            role_ref("ClusterRole", "pod-admin"),
            vec![subject("User", "alice", None)],
        )],
        &[],
    );
    let delete = Attributes::resource("alice", "delete", "", "pods").named("x");
    assert_eq!(
        a.authorize(&delete.clone().in_namespace("dev")).reason(),
        r#"RBAC: allowed by RoleBinding "b/dev" of ClusterRole "pod-admin" to User "alice""#
    );
    assert!(!allowed(&a, &delete.clone().in_namespace("prod")));
    assert!(!allowed(&a, &delete));
    // Non-resource URLs only count through ClusterRoleBindings.
    assert!(!allowed(
        &a,
        &Attributes::non_resource("alice", "get", "/metrics")
    ));
}

#[test]
fn service_account_subjects() {
    let reader = cluster_role("reader", vec![rule(&["get"], &[""], &["pods"])]);
    let a = Authorizer::new(
        &[],
        &[reader],
        &[
            // Namespace defaults to the binding's.
            role_binding(
                "dev",
                "local",
                role_ref("ClusterRole", "reader"),
                vec![subject("ServiceAccount", "builder", None)],
            ),
            // A service account of another namespace, named explicitly.
            role_binding(
                "dev",
                "remote",
                role_ref("ClusterRole", "reader"),
                vec![subject("ServiceAccount", "ci", Some("tools"))],
            ),
        ],
        &[
            // Without a namespace, a ClusterRoleBinding's ServiceAccount subject is nobody.
            cluster_binding(
                "nobody",
                "reader",
                vec![subject("ServiceAccount", "builder", None)],
            ),
            cluster_binding(
                "monitor",
                "reader",
                vec![subject("ServiceAccount", "monitor", Some("ops"))],
            ),
        ],
    );
    let get = |user: &str, ns: &str| {
        Attributes::resource(user, "get", "", "pods")
            .in_namespace(ns)
            .named("p")
    };
    let builder = service_account_username("dev", "builder");
    assert!(allowed(&a, &get(&builder, "dev")));
    assert!(!allowed(&a, &get(&builder, "prod")));
    assert!(!allowed(
        &a,
        &get(&service_account_username("prod", "builder"), "dev")
    ));
    assert!(allowed(&a, &get("system:serviceaccount:tools:ci", "dev")));
    assert!(!allowed(&a, &get("system:serviceaccount:dev:ci", "dev")));
    assert!(allowed(
        &a,
        &get("system:serviceaccount:ops:monitor", "any")
    ));
    assert!(!allowed(
        &a,
        &get("system:serviceaccount:ops:monitorx", "any")
    ));
    assert!(!allowed(
        &a,
        &get("system:serviceaccount:op:s:monitor", "any")
    ));
    assert_eq!(
        a.authorize(&get(&builder, "dev")).reason(),
        r#"RBAC: allowed by RoleBinding "local/dev" of ClusterRole "reader" to ServiceAccount "builder/dev""#
    );
}

#[test]
fn group_subjects() {
    let a = Authorizer::new(
        &[],
        &[cluster_role(
            "reader",
            vec![rule(&["list"], &["apps"], &["*"])],
        )],
        &[],
        &[cluster_binding(
            "b",
            "reader",
            vec![
                subject("User", "carol", None),
                subject("Group", "devs", None),
            ],
        )],
    );
    let list = Attributes::resource("dave", "list", "apps", "deployments");
    assert!(!allowed(&a, &list));
    let list = list.with_groups(["system:authenticated", "devs"]);
    assert_eq!(
        a.authorize(&list).reason(),
        r#"RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "reader" to Group "devs""#
    );
    // A user named like the group is not in it.
    assert!(!allowed(
        &a,
        &Attributes::resource("devs", "list", "apps", "deployments")
    ));
    // Unknown subject kinds match nobody.
    let b = Authorizer::new(
        &[],
        &[cluster_role("reader", vec![rule(&["*"], &["*"], &["*"])])],
        &[],
        &[cluster_binding(
            "b",
            "reader",
            vec![subject("Robot", "r2", None)],
        )],
    );
    assert!(!allowed(&b, &Attributes::resource("r2", "get", "", "pods")));
}

#[test]
fn non_resource_urls() {
    let a = alice_with(vec![PolicyRule {
        verbs: strings(&["get"]),
        non_resource_urls: Some(strings(&["/healthz", "/apis/*", "/logs**"])),
        ..PolicyRule::default()
    }]);
    let get = |path: &str| Attributes::non_resource("alice", "get", path);
    assert!(allowed(&a, &get("/healthz")));
    assert!(!allowed(&a, &get("/healthz/etcd")));
    assert!(allowed(&a, &get("/apis/")));
    assert!(allowed(&a, &get("/apis/apps/v1")));
    assert!(!allowed(&a, &get("/apis")));
    assert!(allowed(&a, &get("/logs")));
    assert!(allowed(&a, &get("/logsx/y")));
    assert!(!allowed(
        &a,
        &Attributes::non_resource("alice", "post", "/healthz")
    ));
    // Resource requests are not matched by URL rules.
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "get", "", "healthz")
    ));

    let all = alice_with(vec![PolicyRule {
        verbs: strings(&["*"]),
        non_resource_urls: Some(strings(&["*"])),
        ..PolicyRule::default()
    }]);
    assert!(allowed(
        &all,
        &Attributes::non_resource("alice", "put", "/anything")
    ));
}

fn labelled(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    let mut role = cluster_role(name, rules);
    role.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    role
}

fn aggregating(name: &str, labels: &[(&str, &str)], selector: (&str, &str)) -> ClusterRole {
    let mut role = labelled(name, labels, vec![rule(&["stale"], &["*"], &["*"])]);
    role.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: Some(vec![LabelSelector {
            match_labels: Some(BTreeMap::from([(
                selector.0.to_owned(),
                selector.1.to_owned(),
            )])),
            match_expressions: None,
        }]),
    });
    role
}

#[test]
fn aggregation() {
    let pods = rule(&["get"], &[""], &["pods"]);
    let secrets = rule(&["get"], &[""], &["secrets"]);
    let roles = [
        aggregating("top", &[], ("to-top", "true")),
        aggregating("middle", &[("to-top", "true")], ("to-middle", "true")),
        labelled("a", &[("to-middle", "true")], vec![pods.clone()]),
        labelled(
            "b",
            &[("to-middle", "true")],
            vec![pods.clone(), secrets.clone()],
        ),
        labelled(
            "c",
            &[("to-middle", "false")],
            vec![rule(&["*"], &["*"], &["*"])],
        ),
        // Selects itself and `loop2`; `loop2` selects it back.
        aggregating("loop1", &[("loop", "x")], ("loop", "x")),
        aggregating("loop2", &[("loop", "x")], ("loop", "x")),
        labelled("d", &[("loop", "x")], vec![secrets.clone()]),
    ];
    let a = Authorizer::new(
        &[],
        &roles,
        &[],
        &[cluster_binding(
            "b",
            "top",
            vec![subject("User", "alice", None)],
        )],
    );
    assert_eq!(
        a.cluster_role_rules("middle"),
        Some(&[pods.clone(), secrets.clone()][..])
    );
    assert_eq!(
        a.cluster_role_rules("top"),
        Some(&[pods.clone(), secrets.clone()][..])
    );
    assert_eq!(a.cluster_role_rules("loop1"), Some(&[secrets.clone()][..]));
    assert_eq!(a.cluster_role_rules("loop2"), Some(&[secrets.clone()][..]));
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "get", "", "secrets")
    ));
    // The stale stored rules of an aggregated role are replaced.
    assert!(!allowed(
        &a,
        &Attributes::resource("alice", "stale", "", "secrets")
    ));
}

#[test]
fn missing_roles_are_ignored() {
    let a = Authorizer::new(
        &[],
        &[cluster_role(
            "reader",
            vec![rule(&["get"], &[""], &["pods"])],
        )],
        &[],
        &[
            cluster_binding("gone", "missing", vec![subject("User", "alice", None)]),
            ClusterRoleBinding {
                role_ref: role_ref("Role", "reader"),
                ..cluster_binding("role", "reader", vec![subject("User", "alice", None)])
            },
            cluster_binding("ok", "reader", vec![subject("User", "alice", None)]),
        ],
    );
    assert!(allowed(
        &a,
        &Attributes::resource("alice", "get", "", "pods")
    ));
    assert_eq!(
        a.authorize(&Attributes::resource("alice", "list", "", "pods"))
            .reason(),
        r#"RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, role.rbac.authorization.k8s.io "reader" not found]"#
    );
    assert_eq!(a.rules_for("alice", &[], None).len(), 1);
}

#[test]
fn bootstrap() {
    let (roles, bindings) = bootstrap_policy();
    let a = Authorizer::new(&[], &roles, &[], &bindings);
    let authenticated = ["system:authenticated".to_owned()];
    let masters = Attributes::resource("root", "deletecollection", "apps", "deployments")
        .with_groups(["system:masters"]);
    assert!(allowed(&a, &masters));
    assert!(allowed(
        &a,
        &Attributes::non_resource("root", "post", "/anything").with_groups(["system:masters"])
    ));
    for path in [
        "/healthz",
        "/version",
        "/apis/apps/v1",
        "/api/v1",
        "/openapi/v3",
    ] {
        let request = Attributes::non_resource("u", "get", path).with_groups(authenticated.clone());
        assert!(allowed(&a, &request), "{path}");
    }
    let anonymous = |path: &str| {
        Attributes::non_resource("system:anonymous", "get", path)
            .with_groups(["system:unauthenticated"])
    };
    assert!(allowed(&a, &anonymous("/readyz")));
    assert!(!allowed(&a, &anonymous("/apis")));
    assert!(allowed(
        &a,
        &Attributes::resource(
            "u",
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews"
        )
        .with_groups(authenticated.clone())
    ));
    assert!(!allowed(
        &a,
        &Attributes::resource("u", "get", "", "pods")
            .in_namespace("default")
            .with_groups(authenticated.clone())
    ));

    // admin, edit and view through RoleBindings.
    let bind = |name: &str, user: &str| {
        role_binding(
            "team",
            name,
            role_ref("ClusterRole", name),
            vec![subject("User", user, None)],
        )
    };
    let a = Authorizer::new(
        &[],
        &roles,
        &[bind("admin", "ann"), bind("edit", "ed"), bind("view", "vi")],
        &bindings,
    );
    let can = |user: &str, verb: &str, group: &str, resource: &str| {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let mut request = Attributes::resource(user, verb, group, resource)
            .in_namespace("team")
            .named("x");
        if !sub.is_empty() {
            request = request.on_subresource(sub);
        }
        allowed(&a, &request)
    };
    for user in ["ann", "ed", "vi"] {
        assert!(can(user, "get", "", "pods"));
        assert!(can(user, "list", "", "pods/log"));
        assert!(can(user, "watch", "apps", "deployments"));
        assert!(can(user, "get", "apps", "replicasets/scale"));
        assert!(can(user, "get", "coordination.k8s.io", "leases"));
        assert!(can(user, "get", "", "endpoints"));
    }
    for user in ["ann", "ed"] {
        assert!(can(user, "get", "", "secrets"));
        assert!(can(user, "create", "", "pods"));
        assert!(can(user, "update", "apps", "deployments/scale"));
        assert!(can(user, "delete", "", "configmaps"));
        assert!(can(user, "impersonate", "", "serviceaccounts"));
        assert!(can(user, "update", "coordination.k8s.io", "leases"));
        assert!(!can(user, "update", "", "endpoints"));
        assert!(!can(user, "update", "", "pods/status"));
    }
    assert!(!can("vi", "get", "", "secrets"));
    assert!(!can("vi", "create", "", "pods"));
    assert!(can("ann", "create", RBAC_GROUP, "rolebindings"));
    assert!(!can("ed", "create", RBAC_GROUP, "rolebindings"));
    assert!(!can("ann", "get", "", "pods/exec"));
    assert!(!can("ann", "get", "", "nodes"));
    // Only in their namespace.
    assert!(!allowed(
        &a,
        &Attributes::resource("ann", "get", "", "pods").in_namespace("other")
    ));
}

#[test]
fn rules_for_lists_cluster_then_namespace_rules() {
    let a = Authorizer::new(
        &[role("dev", "r", vec![rule(&["get"], &[""], &["pods"])])],
        &[cluster_role("c", vec![rule(&["list"], &[""], &["nodes"])])],
        &[role_binding(
            "dev",
            "rb",
            role_ref("Role", "r"),
            vec![subject("Group", "g", None)],
        )],
        &[cluster_binding(
            "crb",
            "c",
            vec![subject("Group", "g", None)],
        )],
    );
    let g = ["g".to_owned()];
    assert_eq!(
        a.rules_for("x", &g, Some("dev")),
        vec![
            rule(&["list"], &[""], &["nodes"]),
            rule(&["get"], &[""], &["pods"])
        ]
    );
    assert_eq!(
        a.rules_for("x", &g, Some("")),
        vec![rule(&["list"], &[""], &["nodes"])]
    );
    assert!(a.rules_for("x", &[], Some("dev")).is_empty());
}

// The property test: the authorizer against a deliberately naive reference model.

const USERS: &[&str] = &[
    "alice",
    "bob",
    "system:serviceaccount:ns1:sa",
    "system:serviceaccount:ns2:sa",
];
const GROUPS: &[&str] = &["g1", "g2"];
const NAMESPACES: &[&str] = &["ns1", "ns2"];
const VERBS: &[&str] = &["get", "list", "create", "*"];
const API_GROUPS: &[&str] = &["", "apps", "*"];
const RESOURCES: &[&str] = &["pods", "pods/log", "deployments", "*/scale", "*", "pods/*"];
const RESOURCE_NAMES: &[&str] = &["a", "b"];
const URLS: &[&str] = &["/healthz", "/apis/*", "/api", "*"];
const LABELS: &[&str] = &["x", "y"];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(pool).prop_map(str::to_owned)
}

fn some_of(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|items| items.into_iter().map(str::to_owned).collect())
}

fn policy_rule() -> impl Strategy<Value = PolicyRule> {
    (
        some_of(VERBS),
        some_of(API_GROUPS),
        some_of(RESOURCES),
        proptest::option::weighted(0.3, some_of(RESOURCE_NAMES)),
        some_of(URLS),
        any::<bool>(),
    )
        .prop_map(|(verbs, groups, resources, names, urls, url_rule)| {
            if url_rule {
                PolicyRule {
                    verbs,
                    non_resource_urls: Some(urls),
                    ..PolicyRule::default()
                }
            } else {
                PolicyRule {
                    verbs,
                    api_groups: Some(groups),
                    resources: Some(resources),
                    resource_names: names,
                    non_resource_urls: None,
                }
            }
        })
}

fn policy_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        pick(USERS).prop_map(|name| subject("User", &name, None)),
        pick(GROUPS).prop_map(|name| subject("Group", &name, None)),
        (
            prop_oneof![Just("sa".to_owned()), Just("other".to_owned())],
            proptest::option::of(pick(NAMESPACES))
        )
            .prop_map(|(name, ns)| subject("ServiceAccount", &name, ns.as_deref())),
        Just(subject("Robot", "alice", None)),
    ]
}

fn reference() -> impl Strategy<Value = RoleRef> {
    (prop_oneof![Just("Role"), Just("ClusterRole")], 0usize..4).prop_map(|(kind, i)| {
        let prefix = if kind == "Role" { "r" } else { "cr" };
        role_ref(kind, &format!("{prefix}{i}"))
    })
}

#[derive(Clone, Debug)]
struct World {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

fn world() -> impl Strategy<Value = World> {
    let roles = proptest::collection::vec(
        (
            pick(NAMESPACES),
            proptest::collection::vec(policy_rule(), 0..3),
        ),
        0..3,
    )
    .prop_map(|roles| {
        roles
            .into_iter()
            .enumerate()
            .map(|(i, (ns, rules))| role(&ns, &format!("r{i}"), rules))
            .collect::<Vec<_>>()
    });
    let cluster_roles = proptest::collection::vec(
        (
            proptest::collection::vec(policy_rule(), 0..3),
            proptest::collection::btree_map(pick(LABELS), pick(LABELS), 0..3),
            proptest::option::weighted(
                0.6,
                proptest::collection::vec((pick(LABELS), pick(LABELS)), 0..3),
            ),
        ),
        0..5,
    )
    .prop_map(|roles| {
        roles
            .into_iter()
            .enumerate()
            .map(|(i, (rules, labels, aggregation))| ClusterRole {
                metadata: ObjectMeta {
                    labels: Some(labels),
                    ..meta(&format!("cr{i}"), None)
                },
                rules: Some(rules),
                aggregation_rule: aggregation.map(|selectors| AggregationRule {
                    cluster_role_selectors: Some(
                        selectors
                            .into_iter()
                            .map(|(k, v)| LabelSelector {
                                match_labels: Some(BTreeMap::from([(k, v)])),
                                match_expressions: None,
                            })
                            .collect(),
                    ),
                }),
            })
            .collect::<Vec<_>>()
    });
    let role_bindings = proptest::collection::vec(
        (
            pick(NAMESPACES),
            reference(),
            proptest::collection::vec(policy_subject(), 1..4),
        ),
        0..6,
    )
    .prop_map(|bindings| {
        bindings
            .into_iter()
            .enumerate()
            .map(|(i, (ns, to, subjects))| role_binding(&ns, &format!("rb{i}"), to, subjects))
            .collect::<Vec<_>>()
    });
    let cluster_role_bindings = proptest::collection::vec(
        (
            reference(),
            proptest::collection::vec(policy_subject(), 1..4),
        ),
        0..3,
    )
    .prop_map(|bindings| {
        bindings
            .into_iter()
            .enumerate()
            .map(|(i, (to, subjects))| ClusterRoleBinding {
                metadata: meta(&format!("crb{i}"), None),
                role_ref: to,
                subjects: Some(subjects),
            })
            .collect::<Vec<_>>()
    });
    (roles, cluster_roles, role_bindings, cluster_role_bindings).prop_map(
        |(roles, cluster_roles, role_bindings, cluster_role_bindings)| World {
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
        },
    )
}

fn request() -> impl Strategy<Value = Attributes> {
    let resource = (
        pick(&["", "apps", "batch"]),
        pick(&["pods", "deployments", "services"]),
        proptest::option::of(pick(&["log", "scale", "*"])),
        proptest::option::of(pick(NAMESPACES)),
        proptest::option::of(pick(RESOURCE_NAMES)),
    )
        .prop_map(|(api_group, resource, subresource, namespace, name)| {
            RequestTarget::Resource(ResourceAttributes {
                api_group,
                resource,
                subresource,
                namespace,
                name,
            })
        });
    let non_resource = pick(&["/healthz", "/healthz/x", "/apis", "/apis/apps", "/api"])
        .prop_map(|path| RequestTarget::NonResource { path });
    (
        pick(USERS),
        some_of(GROUPS),
        pick(&["get", "list", "create", "delete"]),
        prop_oneof![3 => resource, 1 => non_resource],
    )
        .prop_map(|(user, groups, verb, request)| Attributes {
            user,
            groups,
            verb,
            request,
        })
}

/// The reference model: plain loops, written from the Kubernetes documentation rather than
/// from the implementation.
mod model {
    use super::*;

    fn has(list: &Option<Vec<String>>, wanted: &str) -> bool {
        match list {
            Some(items) => items.iter().any(|item| item == wanted),
            None => false,
        }
    }

    pub(super) fn rule_allows(rule: &PolicyRule, request: &Attributes) -> bool {
        if !(rule.verbs.contains(&"*".to_owned()) || rule.verbs.contains(&request.verb)) {
            return false;
        }
        match &request.request {
            RequestTarget::NonResource { path } => {
                let mut ok = false;
                for url in rule.non_resource_urls.clone().unwrap_or_default() {
                    if url == "*" || url == *path {
                        ok = true;
                    }
                    if let Some(prefix) = url.strip_suffix('*')
                        && path.starts_with(prefix.trim_end_matches('*'))
                    {
                        ok = true;
                    }
                }
                ok
            }
            RequestTarget::Resource(r) => {
                let group_ok = has(&rule.api_groups, "*") || has(&rule.api_groups, &r.api_group);
                let mut resource_ok = has(&rule.resources, "*");
                match &r.subresource {
                    None => resource_ok |= has(&rule.resources, &r.resource),
                    Some(sub) => {
                        resource_ok |= has(&rule.resources, &format!("{}/{sub}", r.resource));
                        resource_ok |= has(&rule.resources, &format!("*/{sub}"));
                    }
                }
                let names = rule.resource_names.clone().unwrap_or_default();
                let name_ok = names.is_empty()
                    || match &r.name {
                        Some(name) => names.contains(name),
                        None => names.contains(&String::new()),
                    };
                group_ok && resource_ok && name_ok
            }
        }
    }

    fn subject_is(subject: &Subject, request: &Attributes, binding_ns: &str) -> bool {
        if subject.kind == "User" {
            return subject.name == request.user;
        }
        if subject.kind == "Group" {
            return request.groups.contains(&subject.name);
        }
        if subject.kind == "ServiceAccount" {
            let ns = subject.namespace.clone().unwrap_or(binding_ns.to_owned());
            if ns.is_empty() {
                return false;
            }
            return request.user == format!("system:serviceaccount:{ns}:{}", subject.name);
        }
        false
    }

    /// Cluster role rules after aggregation: repeat until nothing changes.
    pub(super) fn cluster_role_rules(world: &World) -> BTreeMap<String, Vec<PolicyRule>> {
        let mut rules = BTreeMap::new();
        for role in &world.cluster_roles {
            let own = if role.aggregation_rule.is_some() {
                Vec::new()
            } else {
                role.rules.clone().unwrap_or_default()
            };
            rules.insert(role.metadata.name.clone().unwrap_or_default(), own);
        }
        loop {
            let mut changed = false;
            for role in &world.cluster_roles {
                let Some(aggregation) = &role.aggregation_rule else {
                    continue;
                };
                let name = role.metadata.name.clone().unwrap_or_default();
                for selector in aggregation
                    .cluster_role_selectors
                    .clone()
                    .unwrap_or_default()
                {
                    for other in &world.cluster_roles {
                        let other_name = other.metadata.name.clone().unwrap_or_default();
                        if other_name == name {
                            continue;
                        }
                        let labels = other.metadata.labels.clone().unwrap_or_default();
                        let mut selected = true;
                        for (k, v) in selector.match_labels.clone().unwrap_or_default() {
                            if labels.get(&k) != Some(&v) {
                                selected = false;
                            }
                        }
                        if !selected {
                            continue;
                        }
                        for rule in rules.get(&other_name).cloned().unwrap_or_default() {
                            let mine = rules.entry(name.clone()).or_default();
                            if !mine.contains(&rule) {
                                mine.push(rule);
                                changed = true;
                            }
                        }
                    }
                }
            }
            if !changed {
                return rules;
            }
        }
    }

    pub(super) fn allowed(world: &World, request: &Attributes) -> bool {
        let cluster_rules = cluster_role_rules(world);
        let namespace = match &request.request {
            RequestTarget::Resource(r) => r.namespace.clone().unwrap_or_default(),
            RequestTarget::NonResource { .. } => String::new(),
        };
        for binding in &world.cluster_role_bindings {
            let mut applies = false;
            for subject in binding.subjects.clone().unwrap_or_default() {
                if subject_is(&subject, request, "") {
                    applies = true;
                }
            }
            if !applies || binding.role_ref.kind != "ClusterRole" {
                continue;
            }
            for rule in cluster_rules
                .get(&binding.role_ref.name)
                .cloned()
                .unwrap_or_default()
            {
                if rule_allows(&rule, request) {
                    return true;
                }
            }
        }
        if namespace.is_empty() {
            return false;
        }
        for binding in &world.role_bindings {
            if binding.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let mut applies = false;
            for subject in binding.subjects.clone().unwrap_or_default() {
                if subject_is(&subject, request, &namespace) {
                    applies = true;
                }
            }
            if !applies {
                continue;
            }
            let mut rules = Vec::new();
            if binding.role_ref.kind == "ClusterRole" {
                rules = cluster_rules
                    .get(&binding.role_ref.name)
                    .cloned()
                    .unwrap_or_default();
            }
            if binding.role_ref.kind == "Role" {
                for role in &world.roles {
                    if role.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && role.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())
                    {
                        rules = role.rules.clone().unwrap_or_default();
                    }
                }
            }
            for rule in rules {
                if rule_allows(&rule, request) {
                    return true;
                }
            }
        }
        false
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn authorizer_agrees_with_the_reference_model(
        world in world(),
        requests in proptest::collection::vec(request(), 1..64),
    ) {
        let authorizer = Authorizer::new(
            &world.roles,
            &world.cluster_roles,
            &world.role_bindings,
            &world.cluster_role_bindings,
        );
        let expected_rules = model::cluster_role_rules(&world);
        for (name, rules) in &expected_rules {
            let actual = authorizer.cluster_role_rules(name).unwrap_or_default();
            prop_assert_eq!(actual.len(), rules.len(), "rules of {}", name);
            for rule in rules {
                prop_assert!(actual.contains(rule), "rules of {}", name);
            }
        }
        for request in &requests {
            let decision = authorizer.authorize(request);
            prop_assert_eq!(
                decision.is_allowed(),
                model::allowed(&world, request),
                "{:?}: {:?}", request, decision
            );
            // What rules_for reports allows exactly what authorize allows.
            let rules = authorizer.rules_for(&request.user, &request.groups, request.namespace());
            prop_assert_eq!(
                rules.iter().any(|rule| rule_allows(request, rule)),
                decision.is_allowed()
            );
        }
    }
}
