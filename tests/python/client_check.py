"""The official Kubernetes Python client (`pip install kubernetes`) against a running server.

    python client_check.py KUBECONFIG_PATH [--debug]

Lists namespaces; creates a namespace, ConfigMaps and a Deployment in it; reads them back; lists
by label selector; patches the Deployment (strategic merge) and a ConfigMap (JSON merge patch and
JSON patch); watches ConfigMaps from a list's resourceVersion and sees ADDED and DELETED events;
expects 409 for a replace with a stale resourceVersion and 404 for a missing object; deletes the
namespace and waits until it is gone. Prints a line per check, and exits 1 at the first failure
with the reason (the traceback and, for an API error, the server's answer). `--debug` (or
ORCHESTRA_PYTHON_DEBUG=1) prints every request and response to standard error, as `kubectl -v=8`
does.

tests/python_client.rs runs it against `orchestra up`; scripts/python.sh installs the client.
"""

import json
import os
import sys
import threading
import time
import traceback
import uuid

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

LABEL = "app=pyclient"


class CheckFailed(Exception):
    """A check whose result is not what the API promises."""


def ok(what):
    print(f"ok: {what}", flush=True)


def expect(condition, what, got=None):
    if not condition:
        raise CheckFailed(what if got is None else f"{what}; got {got!r}")


def expect_api_error(status, reason, call):
    """Runs `call`, which must fail with an ApiException of `status` whose Status body says
    `reason`; the parsed Status."""
    try:
        result = call()
    except ApiException as error:
        expect(error.status == status, f"expected HTTP {status}", f"{error.status}: {error.body}")
        try:
            body = json.loads(error.body)
        except (TypeError, ValueError):
            raise CheckFailed(f"the {status} body is not JSON: {error.body!r}")
        expect(body.get("kind") == "Status", "the error body is a Status", body)
        expect(body.get("reason") == reason, f"the Status reason is {reason}", body)
        expect(body.get("code") == status, f"the Status code is {status}", body)
        return body
    raise CheckFailed(f"expected HTTP {status}, the call succeeded: {result}")


def watch_until(v1, namespace, resource_version, kind, name, action=None):
    """Watches the ConfigMaps of `namespace` from `resource_version` (10 s at most, the server's
    timeout) until an event of `kind` for the ConfigMap `name` arrives, running `action` in a
    thread meanwhile; the events seen, as (type, name, resourceVersion)."""
    seen = []
    failure = []

    def act():
        time.sleep(0.5)  # let the watch start first: the event then arrives live
        try:
            action()
        except Exception:  # reported after the watch, with the watch's result
            failure.append(traceback.format_exc())

    thread = threading.Thread(target=act) if action else None
    if thread:
        thread.start()
    stream = watch.Watch()
    started = time.monotonic()
    found = False
    try:
        for event in stream.stream(
            v1.list_namespaced_config_map,
            namespace,
            resource_version=resource_version,
            timeout_seconds=10,
            _request_timeout=30,  # should the server not honour timeoutSeconds
        ):
            meta = event["object"].metadata
            seen.append((event["type"], meta.name, meta.resource_version))
            if event["type"] == kind and meta.name == name:
                found = True
                stream.stop()
                break
    finally:
        if thread:
            thread.join()
    if failure:
        raise CheckFailed(f"the change made during the watch failed:\n{failure[0]}")
    expect(found, f"{kind} {name} within 10 s of watching from resourceVersion "
           f"{resource_version} (watched {time.monotonic() - started:.1f} s)", seen)
    return seen


def merge_patch(api_client, path, body, response_type):
    """A PATCH of `path` with an `application/merge-patch+json` body (the generated methods send
    a strategic merge patch for a dict body, a JSON patch for a list)."""
    return api_client.call_api(
        path,
        "PATCH",
        header_params={
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        },
        body=body,
        response_type=response_type,
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def deployment_body(name):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "pyclient"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "pyclient", "deployment": name}},
            "template": {
                "metadata": {"labels": {"app": "pyclient", "deployment": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": "pyclient:1",
                            "command": ["sleep", "3600"],
                            "env": [{"name": "FIRST", "value": "1"}],
                        }
                    ],
                },
            },
        },
    }


def log_requests(api_client):
    """Prints every request (method, URL, query, content type, body) and its answer (status,
    content type, body; a watch's stream is left unread) to standard error, the bearer token
    left out: `Configuration.debug` would print the token and only part of the exchanges."""
    rest = api_client.rest_client
    request = rest.request

    def logged(method, url, query_params=None, headers=None, body=None, **kwargs):
        headers = headers or {}
        content_type = headers.get("Content-Type")
        if content_type == "application/json-patch+json" and not isinstance(body, list):
            content_type = "application/strategic-merge-patch+json"  # as the client sends it
        print(f"> {method} {url} query={query_params} Content-Type={content_type}",
              file=sys.stderr, flush=True)
        if body is not None:
            print(f"> {json.dumps(body, default=str)}", file=sys.stderr, flush=True)
        try:
            response = request(method, url, query_params=query_params, headers=headers,
                               body=body, **kwargs)
        except ApiException as error:
            print(f"< {error.status} {error.reason} {error.body}", file=sys.stderr, flush=True)
            raise
        content_type = response.getheader("Content-Type")
        if kwargs.get("_preload_content", True):
            print(f"< {response.status} {content_type} {response.data!r}", file=sys.stderr,
                  flush=True)
        else:
            print(f"< {response.status} {content_type} (streamed)", file=sys.stderr, flush=True)
        return response

    rest.request = logged


def run(kubeconfig, debug):
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    if debug:
        log_requests(api_client)
    v1 = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    ok(f"loaded {kubeconfig}: server {configuration.host}")

    names = {ns.metadata.name for ns in v1.list_namespace().items}
    expect({"default", "kube-system"} <= names, "default and kube-system are listed", sorted(names))
    ok(f"list namespaces: {sorted(names)}")

    namespace = f"pyclient-{uuid.uuid4().hex[:8]}"
    created = v1.create_namespace({"metadata": {"name": namespace}})
    expect(created.metadata.name == namespace, "the created namespace's name", created.metadata.name)
    expect(bool(created.metadata.uid), "the created namespace has a uid", created.metadata)
    ok(f"create namespace {namespace}")

    settings = v1.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "settings", "labels": {"app": "pyclient"}},
            "data": {"color": "red", "size": "large"},
        },
    )
    expect(settings.metadata.namespace == namespace, "the ConfigMap's namespace",
           settings.metadata.namespace)
    expect(bool(settings.metadata.resource_version), "the ConfigMap has a resourceVersion",
           settings.metadata)
    created_version = settings.metadata.resource_version
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "unlabelled"}, "data": {}})
    ok("create configmaps settings (labelled app=pyclient) and unlabelled")

    deployment = apps.create_namespaced_deployment(namespace, deployment_body("web"))
    expect(deployment.spec.replicas == 1, "the created Deployment's replicas",
           deployment.spec.replicas)
    ok("create deployment web")

    read = v1.read_namespaced_config_map("settings", namespace)
    expect(read.data == {"color": "red", "size": "large"}, "the ConfigMap's data", read.data)
    expect(read.metadata.labels == {"app": "pyclient"}, "the ConfigMap's labels",
           read.metadata.labels)
    expect(read.metadata.uid == settings.metadata.uid, "the ConfigMap's uid", read.metadata.uid)
    read_deployment = apps.read_namespaced_deployment("web", namespace)
    container = read_deployment.spec.template.spec.containers[0]
    expect(container.image == "pyclient:1", "the Deployment's image", container.image)
    expect(read_deployment.spec.selector.match_labels == {"app": "pyclient", "deployment": "web"},
           "the Deployment's selector", read_deployment.spec.selector)
    ok("read configmap settings and deployment web back")

    labelled = v1.list_namespaced_config_map(namespace, label_selector=LABEL)
    expect([cm.metadata.name for cm in labelled.items] == ["settings"],
           f"only settings has {LABEL}", [cm.metadata.name for cm in labelled.items])
    everything = v1.list_namespaced_config_map(namespace)
    listed = sorted(cm.metadata.name for cm in everything.items)
    expect({"settings", "unlabelled"} <= set(listed), "both ConfigMaps are listed", listed)
    unlabelled = v1.list_namespaced_config_map(namespace, label_selector="!app")
    expect("settings" not in [cm.metadata.name for cm in unlabelled.items],
           "!app leaves settings out", [cm.metadata.name for cm in unlabelled.items])
    across = apps.list_deployment_for_all_namespaces(label_selector=LABEL)
    expect([(d.metadata.namespace, d.metadata.name) for d in across.items] == [(namespace, "web")],
           f"the deployments of all namespaces with {LABEL}",
           [(d.metadata.namespace, d.metadata.name) for d in across.items])
    ok(f"list with label selectors {LABEL}, !app (and deployments of all namespaces)")

    # A strategic merge patch (the client's default for a dict body): containers merge by name,
    # so the image stays while the env gains a variable.
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "metadata": {"labels": {"tier": "frontend"}},
            "spec": {
                "replicas": 2,
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "web", "env": [{"name": "SECOND", "value": "2"}]}
                        ]
                    }
                },
            },
        },
    )
    expect(patched.spec.replicas == 2, "replicas after the patch", patched.spec.replicas)
    expect(patched.metadata.labels == {"app": "pyclient", "tier": "frontend"},
           "labels after the patch", patched.metadata.labels)
    containers = patched.spec.template.spec.containers
    expect(len(containers) == 1 and containers[0].image == "pyclient:1",
           "the container (merged by name, its image kept)",
           [(c.name, c.image) for c in containers])
    env = {e.name: e.value for e in containers[0].env or []}
    expect(env == {"FIRST": "1", "SECOND": "2"}, "env merged by name", env)
    again = apps.read_namespaced_deployment("web", namespace)
    expect(again.spec.replicas == 2 and again.metadata.labels.get("tier") == "frontend",
           "the patch is stored", (again.spec.replicas, again.metadata.labels))
    ok("patch deployment web (strategic merge): replicas 2, label tier=frontend, env merged")

    merged = merge_patch(
        api_client,
        f"/api/v1/namespaces/{namespace}/configmaps/settings",
        {"metadata": {"labels": {"patched": "merge"}}, "data": {"color": "blue", "size": None}},
        "V1ConfigMap",
    )
    expect(merged.data == {"color": "blue"}, "data after the merge patch (size removed)",
           merged.data)
    expect(merged.metadata.labels == {"app": "pyclient", "patched": "merge"},
           "labels after the merge patch", merged.metadata.labels)
    expect(merged.metadata.resource_version != created_version,
           "the resourceVersion changes with the patch", merged.metadata.resource_version)
    read = v1.read_namespaced_config_map("settings", namespace)
    expect(read.data == {"color": "blue"}, "the merge patch is stored", read.data)
    ok("patch configmap settings (merge patch): data.color=blue, data.size removed, a label")

    # A JSON patch (the client's choice for a list body).
    json_patched = v1.patch_namespaced_config_map(
        "settings",
        namespace,
        [
            {"op": "add", "path": "/data/shape", "value": "round"},
            {"op": "test", "path": "/data/color", "value": "blue"},
        ],
    )
    expect(json_patched.data == {"color": "blue", "shape": "round"},
           "data after the JSON patch", json_patched.data)
    ok("patch configmap settings (JSON patch): data.shape added")

    # Watch from the list's resourceVersion while another thread creates a ConfigMap.
    listed = v1.list_namespaced_config_map(namespace)
    expect(bool(listed.metadata.resource_version), "the list has a resourceVersion",
           listed.metadata)
    seen = watch_until(
        v1,
        namespace,
        listed.metadata.resource_version,
        "ADDED",
        "watched",
        lambda: v1.create_namespaced_config_map(
            namespace, {"metadata": {"name": "watched"}, "data": {"a": "b"}}
        ),
    )
    ok(f"watch from list resourceVersion {listed.metadata.resource_version}: "
       f"ADDED watched arrived (events {seen})")

    # The same event again, replayed from the older resourceVersion after the fact.
    seen = watch_until(v1, namespace, listed.metadata.resource_version, "ADDED", "watched")
    ok(f"watch from the older resourceVersion replays ADDED watched (events {seen})")

    # A replace carrying the resourceVersion from before the patches.
    stale = v1.read_namespaced_config_map("settings", namespace)
    stale.metadata.resource_version = created_version
    stale.data = {"color": "green"}
    conflict = expect_api_error(
        409, "Conflict", lambda: v1.replace_namespaced_config_map("settings", namespace, stale)
    )
    read = v1.read_namespaced_config_map("settings", namespace)
    expect(read.data == {"color": "blue", "shape": "round"}, "the refused replace changed nothing",
           read.data)
    ok(f"replace with stale resourceVersion {created_version}: 409 ({conflict.get('message')})")

    # A replace with the current resourceVersion succeeds.
    current = v1.read_namespaced_config_map("settings", namespace)
    current.data = {"color": "green"}
    replaced = v1.replace_namespaced_config_map("settings", namespace, current)
    expect(replaced.data == {"color": "green"}, "data after the replace", replaced.data)
    ok("replace with the current resourceVersion")

    missing = expect_api_error(
        404, "NotFound", lambda: v1.read_namespaced_config_map("missing", namespace)
    )
    expect_api_error(404, "NotFound", lambda: apps.read_namespaced_deployment("missing", namespace))
    ok(f"get missing objects: 404 ({missing.get('message')})")

    before_delete = v1.list_namespaced_config_map(namespace).metadata.resource_version
    seen = watch_until(
        v1,
        namespace,
        before_delete,
        "DELETED",
        "settings",
        lambda: v1.delete_namespaced_config_map("settings", namespace),
    )
    expect_api_error(404, "NotFound", lambda: v1.read_namespaced_config_map("settings", namespace))
    ok(f"delete configmap settings: DELETED event (events {seen}), then 404")

    apps.delete_namespaced_deployment("web", namespace)
    expect_api_error(404, "NotFound", lambda: apps.read_namespaced_deployment("web", namespace))
    ok("delete deployment web")

    v1.delete_namespace(namespace)
    deadline = time.monotonic() + 30
    while True:
        try:
            phase = v1.read_namespace(namespace).status.phase
        except ApiException as error:
            expect(error.status == 404, "404 once the namespace is gone",
                   f"{error.status}: {error.body}")
            break
        expect(time.monotonic() < deadline, "the namespace is gone within 30 s", phase)
        time.sleep(0.2)
    ok(f"delete namespace {namespace}: gone")


def main():
    args = [a for a in sys.argv[1:] if a != "--debug"]
    debug = "--debug" in sys.argv[1:] or os.environ.get("ORCHESTRA_PYTHON_DEBUG") == "1"
    if len(args) != 1:
        print(f"usage: {sys.argv[0]} KUBECONFIG_PATH [--debug]", file=sys.stderr)
        return 2
    try:
        run(args[0], debug)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", flush=True)
        traceback.print_exc()
        return 1
    except ApiException as error:
        print(f"FAILED: the server answered HTTP {error.status} {error.reason}", flush=True)
        print(f"headers: {dict(error.headers or {})}\nbody: {error.body}", flush=True)
        traceback.print_exc()
        return 1
    except Exception as error:  # a client-side failure, such as a model the answer does not fit
        print(f"FAILED: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc()
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
