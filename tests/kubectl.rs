//! The real `kubectl` against a freshly started `orchestra up`: the voting-app fixture applied and
//! listed, a deployment of the `hello_server` example created, scaled, rolled out, changed and
//! rolled back, its logs read; server-side apply with its conflicts; `explain`; a stale replace
//! and an invalid manifest refused; and everything kept across a restart of `orchestra up`.
//!
//! kubectl is on the machine (scripts install nothing for it); without it the test fails under
//! CI and is skipped elsewhere.

mod support;

use std::path::Path;

use support::up::{Up, free_port, kubectl_available};
use support::{StopProcesses, hello_server};

const POD_RANGE: &str = "127.96.0.0/16";
const NODE: &str = "kubectl-node";
const FIXTURES: &str = "../shared/fixtures/voting-app";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn kubectl_drives_orchestra_up() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _cleanup = StopProcesses(data_dir.clone());
    let port = free_port();
    let up = Up::start(&data_dir, port, NODE, POD_RANGE);

    // The voting app, as it is, with kubectl's default (strict, server-side) validation.
    let applied = up.ok(&["apply", "-f", FIXTURES]);
    for line in [
        "deployment.apps/vote created",
        "service/vote created",
        "deployment.apps/worker created",
    ] {
        assert!(applied.contains(line), "{applied}");
    }
    let wide = up.until(&["get", "pods,deploy,rs,svc", "-o", "wide"], |out| {
        out.lines().filter(|line| line.starts_with("pod/")).count() == 5
    });
    for expected in [
        "NAME ",
        "READY",
        "STATUS",
        "NOMINATED NODE",
        "deployment.apps/vote",
        "dockersamples/examplevotingapp_vote",
        "replicaset.apps/vote-",
        "service/vote",
        "NodePort",
        "8080:31000/TCP",
        "app=vote",
        NODE,
    ] {
        assert!(wide.contains(expected), "no {expected:?} in\n{wide}");
    }
    // describe: the object, its replica sets and its events (the controller's scaling).
    let described = up.until(&["describe", "deployment", "vote"], |out| {
        out.contains("ScalingReplicaSet")
    });
    for expected in [
        "Name:",
        "vote",
        "Selector:",
        "app=vote",
        "StrategyType:",
        "RollingUpdate",
        "NewReplicaSet:",
        "Scaled up replica set vote-",
    ] {
        assert!(
            described.contains(expected),
            "no {expected:?} in\n{described}"
        );
    }

    // A deployment made by `kubectl create` (a protobuf body), then scaled and rolled out.
    let hello = hello_server();
    let created = up.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=hello:1",
        "--",
        &hello.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        created.contains("deployment.apps/hello created"),
        "{created}"
    );
    up.ok(&["scale", "deployment/hello", "--replicas=5"]);
    let status = up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    up.until(&["get", "deployment", "hello"], |out| out.contains("5/5"));

    // Changes make revisions; undo goes back to the previous one.
    up.ok(&["set", "image", "deployment/hello", "hello=hello:2"]);
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    up.ok(&["set", "env", "deployment/hello", "GREETING=hi"]);
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    let env = up.ok(&[
        "get",
        "deployment/hello",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(env.contains("GREETING"), "{env}");
    let undone = up.ok(&["rollout", "undo", "deployment/hello"]);
    assert!(undone.contains("rolled back"), "{undone}");
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    let template = up.ok(&[
        "get",
        "deployment/hello",
        "-o",
        "jsonpath={.spec.template.spec.containers[0]}",
    ]);
    assert!(
        template.contains("hello:2") && !template.contains("GREETING"),
        "{template}"
    );
    let waited = up.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/hello",
        "--timeout=60s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");
    let logs = up.until(&["logs", "deployment/hello"], |out| {
        out.contains("listening on 127.0.0.1:")
    });
    assert!(logs.contains("hello (version"), "{logs}");

    // Server-side apply: created, then re-applied, then refused for a field another manager owns.
    let settings = write(
        dir.path(),
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
    );
    let applied = up.ok(&["apply", "--server-side", "-f", &settings]);
    assert!(
        applied.contains("configmap/settings serverside-applied"),
        "{applied}"
    );
    let other = write(
        dir.path(),
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: slow\n",
    );
    let conflict = up.fails(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &other,
    ]);
    assert!(
        conflict.contains("conflict") && conflict.contains(".data.mode"),
        "{conflict}"
    );
    let forced = up.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert!(forced.contains("serverside-applied"), "{forced}");
    let mode = up.ok(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "slow");

    // explain reads the OpenAPI v3 documents.
    let explained = up.ok(&["explain", "deployment.spec.strategy"]);
    for expected in [
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "rollingUpdate",
        "RollingUpdateDeployment",
    ] {
        assert!(
            explained.contains(expected),
            "no {expected:?} in\n{explained}"
        );
    }

    // A replace from a stale copy is refused with a conflict.
    let stale = up.ok(&["get", "deployment", "vote", "-o", "json"]);
    let stale = write(dir.path(), "stale.json", &stale);
    up.ok(&["annotate", "deployment", "vote", "touched=yes"]);
    let refused = up.fails(&["replace", "-f", &stale]);
    assert!(
        refused.contains("Conflict") && refused.contains("the object has been modified"),
        "{refused}"
    );

    // An invalid manifest is refused with its field paths.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  replicas: -2\n  selector:\n    matchLabels: {app: bad}\n  template:\n    metadata:\n      labels: {app: bad}\n    spec:\n      containers:\n      - {name: c, image: x}\n",
    );
    let invalid = up.fails(&["apply", "-f", &bad]);
    assert!(
        invalid.contains("spec.replicas: Invalid value: -2"),
        "{invalid}"
    );
    let unknown = write(
        dir.path(),
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\ndataa:\n  a: b\n",
    );
    let strict = up.fails(&["apply", "-f", &unknown]);
    assert!(strict.contains("dataa"), "{strict}");

    // Delete.
    let deleted = up.ok(&["delete", "deployment", "worker"]);
    assert!(
        deleted.contains("deployment.apps \"worker\" deleted"),
        "{deleted}"
    );
    let gone = up.fails(&["get", "deployment", "worker"]);
    assert!(gone.contains("NotFound"), "{gone}");

    // A restart keeps the objects and the running pods (the same containers, not restarted).
    let pods_before = up.ok(&[
        "get",
        "pods",
        "-l",
        "app=hello",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
    ]);
    up.stop();
    let up = Up::start(&data_dir, port, NODE, POD_RANGE);
    let kept = up.ok(&["get", "deployments", "-o", "name"]);
    for name in [
        "deployment.apps/hello",
        "deployment.apps/vote",
        "deployment.apps/db",
    ] {
        assert!(kept.contains(name), "{kept}");
    }
    assert!(!kept.contains("worker"), "{kept}");
    assert_eq!(
        up.ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "slow"
    );
    let pods_after = up.until(
        &[
            "get",
            "pods",
            "-l",
            "app=hello",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
        ],
        |out| !out.trim().is_empty(),
    );
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&pods_before), sorted(&pods_after));
    up.until(&["get", "deployment", "hello"], |out| out.contains("5/5"));
    up.stop();
}

/// The resource lines of `kubectl auth can-i --list`: `(resource, resource names, verbs)`.
fn resource_rules(listing: &str) -> Vec<(String, String, String)> {
    listing
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            match columns.as_slice() {
                [resource, _urls, names, verbs @ ..] => {
                    Some(((*resource).to_owned(), (*names).to_owned(), verbs.join(" ")))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn kubectl_auth_follows_rbac() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _cleanup = StopProcesses(data_dir.clone());
    let up = Up::start(&data_dir, free_port(), "auth-node", "127.95.0.0/16");
    const SA: &str = "--as=system:serviceaccount:default:default";

    let whoami = up.ok(&["auth", "whoami"]);
    assert!(
        whoami.contains("admin") && whoami.contains("system:masters"),
        "{whoami}"
    );
    let as_bob = up.ok(&["auth", "whoami", "--as=bob", "--as-group=dev"]);
    assert!(
        as_bob.contains("bob") && as_bob.contains("[dev system:authenticated]"),
        "{as_bob}"
    );

    // Before any binding the account may only ask about itself.
    let before = resource_rules(&up.ok(&["auth", "can-i", "--list", SA]));
    let self_reviews = [
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    ];
    let resources: Vec<&str> = before.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(resources, self_reviews, "{before:?}");
    assert_eq!(up.fails(&["auth", "can-i", "list", "pods", SA]).trim(), "");
    assert_eq!(
        up.run(&["auth", "can-i", "list", "pods", SA]).stdout,
        b"no\n"
    );

    // A Role and its binding: the listing then shows exactly what they grant.
    up.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    up.ok(&[
        "create",
        "role",
        "settings-reader",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=settings",
    ]);
    for role in ["pod-reader", "settings-reader"] {
        up.ok(&[
            "create",
            "rolebinding",
            role,
            &format!("--role={role}"),
            "--serviceaccount=default:default",
        ]);
    }
    let listing = up.until(&["auth", "can-i", "--list", SA], |out| {
        out.contains("configmaps") && out.contains("pods")
    });
    let mut granted = resource_rules(&listing);
    granted.retain(|(resource, _, _)| !self_reviews.contains(&resource.as_str()));
    granted.sort();
    assert_eq!(
        granted,
        [
            (
                "configmaps".to_owned(),
                "[settings]".to_owned(),
                "[get]".to_owned()
            ),
            ("pods".to_owned(), "[]".to_owned(), "[get list]".to_owned()),
        ],
        "{listing}"
    );
    assert_eq!(up.ok(&["auth", "can-i", "list", "pods", SA]), "yes\n");
    assert_eq!(
        up.run(&["auth", "can-i", "delete", "pods", SA]).stdout,
        b"no\n"
    );
    assert_eq!(
        up.run(&["auth", "can-i", "list", "pods", "-n", "kube-system", SA])
            .stdout,
        b"no\n"
    );
    assert_eq!(
        up.ok(&["auth", "can-i", "get", "configmaps/settings", SA]),
        "yes\n"
    );
    assert_eq!(
        up.run(&["auth", "can-i", "get", "configmaps/other", SA])
            .stdout,
        b"no\n"
    );
    let refused = up.fails(&["get", "secrets", SA]);
    assert!(
        refused.contains(
            r#"User "system:serviceaccount:default:default" cannot list resource "secrets""#
        ),
        "{refused}"
    );

    // A pod's token (TokenRequest bound to the pod) works for exactly those bindings, and stops
    // working when the pod goes.
    up.ok(&["run", "web", "--image=hello:1", "--restart=Never"]);
    let uid = up.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let token = up.ok(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=web",
        &format!("--bound-object-uid={uid}"),
    ]);
    let token = format!("--token={}", token.trim());
    let pods = up.ok(&["get", "pods", &token]);
    assert!(pods.contains("web"), "{pods}");
    let whoami = up.ok(&["auth", "whoami", &token]);
    assert!(
        whoami.contains("system:serviceaccount:default:default"),
        "{whoami}"
    );
    assert!(
        up.fails(&["delete", "pod", "web", &token])
            .contains("Forbidden")
    );
    assert!(
        up.fails(&["get", "deployments", &token])
            .contains("Forbidden")
    );
    up.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    up.until(&["get", "pods", "-o", "name"], |out| {
        !out.contains("pod/web")
    });
    let gone = up.fails(&["get", "pods", &token]);
    assert!(gone.contains("Unauthorized"), "{gone}");

    // A pod calls the API with the token the agent projected into it (the process runtime
    // says where with ORCHESTRA_SERVICE_ACCOUNT_DIR), trusting the CA beside it: it may list
    // pods, as its account's bindings say, and not secrets.
    let kubectl_path = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v kubectl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = format!(
        "D=$ORCHESTRA_SERVICE_ACCOUNT_DIR; echo namespace=$(cat $D/namespace); \
         K=\"{} --server=https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT \
         --certificate-authority=$D/ca.crt --token=$(cat $D/token)\"; \
         $K get pods -o name; $K get secrets 2>&1; $K auth whoami 2>&1",
        kubectl_path.trim()
    );
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "caller"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "host", "command": ["/bin/sh", "-c", script]}]
        }
    });
    let manifest = dir.path().join("caller.json");
    std::fs::write(&manifest, pod.to_string()).unwrap();
    up.ok(&["create", "-f", &manifest.to_string_lossy()]);
    let logs = up.until(&["logs", "caller"], |out| out.contains("Username"));
    assert!(logs.contains("namespace=default"), "{logs}");
    assert!(logs.contains("pod/caller"), "{logs}");
    assert!(
        logs.contains(
            r#"User "system:serviceaccount:default:default" cannot list resource "secrets""#
        ),
        "{logs}"
    );
    assert!(
        logs.contains("system:serviceaccount:default:default"),
        "{logs}"
    );
    let mounted = up.ok(&[
        "get",
        "pod",
        "caller",
        "-o",
        "jsonpath={.spec.volumes[0].name}",
    ]);
    assert!(mounted.starts_with("kube-api-access-"), "{mounted}");

    // Escalation: an admin of the namespace may bind what it holds, not cluster-admin.
    up.ok(&[
        "create",
        "rolebinding",
        "jane-admin",
        "--clusterrole=admin",
        "--user=jane",
    ]);
    up.until(
        &["auth", "can-i", "create", "rolebindings", "--as=jane"],
        |out| out == "yes\n",
    );
    up.ok(&[
        "create",
        "rolebinding",
        "viewers",
        "--clusterrole=view",
        "--group=viewers",
        "--as=jane",
    ]);
    let escalation = up.fails(&[
        "create",
        "rolebinding",
        "root",
        "--clusterrole=cluster-admin",
        "--user=jane",
        "--as=jane",
    ]);
    assert!(
        escalation.contains("attempting to grant RBAC permissions not currently held"),
        "{escalation}"
    );

    // Every request is in the audit log, with who asked and as whom.
    let audit = std::fs::read_to_string(data_dir.join("audit.log")).unwrap();
    let impersonated = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| {
            event["impersonatedUser"]["username"] == "system:serviceaccount:default:default"
                && event["objectRef"]["resource"] == "secrets"
        })
        .expect("the refused secrets list in the audit log");
    assert_eq!(impersonated["user"]["username"], "admin");
    assert_eq!(impersonated["verb"], "list");
    assert_eq!(impersonated["responseStatus"]["code"], 403);
}
