use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            template: template("web:v1"),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn replica_set(name: &str, spec: i32, status: i32, available: i32, current: bool) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec),
            ..ReplicaSetSpec::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: status,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            observed_generation: Some(if current { 2 } else { 1 }),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn percent(value: &str) -> IntOrString {
    IntOrString::String(value.into())
}

#[test]
fn safe_encoding_maps_digits_like_kubernetes() {
    // '0' is byte 48: 48 % 27 = 21 → '4'; '9' is 57: 57 % 27 = 3 → 'f'.
    assert_eq!(safe_encode("0"), "4");
    assert_eq!(safe_encode("9"), "f");
    assert_eq!(safe_encode("1234567890").len(), 10);
}

#[test]
fn fnv1a_matches_reference_values() {
    // The FNV-1a test vectors: "" and "a".
    assert_eq!(fnv1a(0x811c_9dc5, b""), 0x811c_9dc5);
    assert_eq!(fnv1a(0x811c_9dc5, b"a"), 0xe40c_292c);
    assert_eq!(fnv1a(0x811c_9dc5, b"foobar"), 0xbf9c_f968);
}

#[test]
fn hashes_depend_on_the_template_and_the_collision_count() {
    let v1 = template("web:v1");
    let v2 = template("web:v2");
    assert_eq!(compute_hash(&v1, None), compute_hash(&v1.clone(), None));
    assert_ne!(compute_hash(&v1, None), compute_hash(&v2, None));
    assert_ne!(compute_hash(&v1, Some(1)), compute_hash(&v1, Some(2)));
    assert_ne!(compute_hash(&v1, None), compute_hash(&v1, Some(0)));
}

#[test]
fn fenceposts_round_surge_up_and_unavailability_down() {
    assert_eq!(
        resolve_fenceposts(Some(&percent("25%")), Some(&percent("25%")), 10),
        Ok((3, 2))
    );
    assert_eq!(
        resolve_fenceposts(Some(&percent("10%")), Some(&percent("10%")), 1),
        Ok((1, 0))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&percent("10%")), 5),
        Ok((0, 1))
    );
    assert_eq!(
        resolve_fenceposts(Some(&percent("5")), Some(&IntOrString::Int(1)), 5),
        Ok((5, 1))
    );
    assert!(resolve_fenceposts(Some(&percent("x%")), None, 5).is_err());
    let recreate = {
        let mut d = deployment(10, percent("25%"), percent("25%"));
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        d
    };
    assert_eq!(fenceposts(&recreate).unwrap(), (0, 0));
    let mut big = deployment(2, IntOrString::Int(0), IntOrString::Int(5));
    assert_eq!(max_unavailable(&big).unwrap(), 2);
    big.spec.as_mut().unwrap().replicas = Some(0);
    assert_eq!(max_unavailable(&big).unwrap(), 0);
}

#[test]
fn templates_compare_without_their_hash() {
    let plain = template("web:v1");
    let mut hashed = plain.clone();
    hashed
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
    assert!(equal_ignore_hash(&plain, &hashed));
    assert!(!equal_ignore_hash(&plain, &template("web:v2")));
}

#[test]
fn revisions_and_their_history_advance() {
    let d = deployment(3, percent("25%"), percent("25%"));
    let mut rs = replica_set("web-a", 3, 3, 3, true);
    assert!(set_new_replica_set_annotations(&d, &mut rs, 1, false, 1));
    assert_eq!(revision(&rs.metadata), Some(1));
    assert_eq!(
        annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION),
        Some("3")
    );
    assert_eq!(annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION), Some("4"));
    // Already at that revision: nothing to do.
    assert!(!set_new_replica_set_annotations(&d, &mut rs, 1, true, 1));
    // Rolled back to: the next revision, the former one in the history.
    assert!(set_new_replica_set_annotations(&d, &mut rs, 4, true, 1));
    assert_eq!(revision(&rs.metadata), Some(4));
    assert_eq!(
        annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION),
        Some("1")
    );
    assert!(set_new_replica_set_annotations(&d, &mut rs, 6, true, 1));
    assert_eq!(
        annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION),
        Some("1,4")
    );
}

#[test]
fn deployment_annotations_are_copied_but_the_skipped_ones() {
    let mut d = deployment(3, percent("25%"), percent("25%"));
    d.metadata.annotations = Some(BTreeMap::from([
        ("team".to_owned(), "blue".to_owned()),
        (REVISION_ANNOTATION.to_owned(), "9".to_owned()),
        (LAST_APPLIED_ANNOTATION.to_owned(), "{}".to_owned()),
    ]));
    let mut rs = replica_set("web-a", 3, 3, 3, true);
    set_new_replica_set_annotations(&d, &mut rs, 2, false, 1);
    let annotations = rs.metadata.annotations.unwrap();
    assert_eq!(annotations["team"], "blue");
    assert_eq!(annotations[REVISION_ANNOTATION], "2");
    assert!(!annotations.contains_key(LAST_APPLIED_ANNOTATION));
}

#[test]
fn the_new_replica_set_grows_within_the_pods_that_may_exist() {
    let d = deployment(10, IntOrString::Int(3), IntOrString::Int(2));
    let new = replica_set("new", 0, 0, 0, true);
    // The old ReplicaSet's spec says 8, but its status still counts 10 pods.
    let old = replica_set("old", 8, 10, 8, true);
    let all = vec![old.clone(), new.clone()];
    assert_eq!(new_replica_set_replicas(&d, &all, Some(&new)).unwrap(), 3);
    // Kubernetes would count 8 and grow to 5.
    let caught_up = replica_set("old", 8, 8, 8, true);
    let all = vec![caught_up, new.clone()];
    assert_eq!(new_replica_set_replicas(&d, &all, Some(&new)).unwrap(), 5);
    // Never beyond `replicas`.
    let gone = replica_set("old", 0, 0, 0, true);
    let all = vec![gone, new.clone()];
    assert_eq!(new_replica_set_replicas(&d, &all, Some(&new)).unwrap(), 10);
}

#[test]
fn availability_counts_only_current_statuses_within_spec() {
    assert_eq!(surely_available(&replica_set("a", 3, 5, 5, true)), 3);
    assert_eq!(surely_available(&replica_set("a", 5, 5, 4, true)), 4);
    assert_eq!(surely_available(&replica_set("a", 5, 5, 5, false)), 0);
    assert_eq!(pods_at_most(&replica_set("a", 3, 5, 5, true)), 5);
    assert_eq!(pods_at_most(&replica_set("a", 6, 5, 5, true)), 6);
}

fn annotated(mut rs: ReplicaSet, max: i32, created: i64) -> ReplicaSet {
    rs.metadata.annotations = Some(BTreeMap::from([(
        MAX_REPLICAS_ANNOTATION.to_owned(),
        max.to_string(),
    )]));
    rs.metadata.creation_timestamp = Timestamp::from_second(1_800_000_000 + created)
        .ok()
        .map(Time);
    rs
}

#[test]
fn proportional_scaling_shares_the_change() {
    // 10 replicas, surge 3: old at 8, new at 5 (13 = 10 + 3). Scaled to 20: 23 to share.
    let d = deployment(20, IntOrString::Int(3), IntOrString::Int(2));
    let old = annotated(replica_set("old", 8, 8, 8, true), 13, 0);
    let new = annotated(replica_set("new", 5, 5, 0, true), 13, 10);
    let sizes: BTreeMap<String, i32> = proportional_sizes(&d, &[old, new], 3).into_iter().collect();
    assert_eq!(sizes["old"], 14);
    assert_eq!(sizes["new"], 9);

    // Down to 5 (8 with surge): 8*8/13 = 4.9 → 5, 5*8/13 = 3.1 → 3.
    let d = deployment(5, IntOrString::Int(3), IntOrString::Int(2));
    let old = annotated(replica_set("old", 8, 8, 8, true), 13, 0);
    let new = annotated(replica_set("new", 5, 5, 0, true), 13, 10);
    let sizes: BTreeMap<String, i32> = proportional_sizes(&d, &[old, new], 3).into_iter().collect();
    assert_eq!(sizes.values().sum::<i32>(), 8);
    assert_eq!(sizes["old"], 5);

    // To zero: everything goes.
    let d = deployment(0, IntOrString::Int(3), IntOrString::Int(2));
    let old = annotated(replica_set("old", 8, 8, 8, true), 13, 0);
    let new = annotated(replica_set("new", 5, 5, 0, true), 13, 10);
    let sizes: Vec<i32> = proportional_sizes(&d, &[old, new], 3)
        .into_iter()
        .map(|(_, size)| size)
        .collect();
    assert_eq!(sizes, [0, 0]);
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let at = |seconds: i64| Timestamp::from_second(1_800_000_000 + seconds).unwrap();
    let mut status = DeploymentStatus::default();
    set_condition(
        &mut status,
        new_condition(
            PROGRESSING,
            "True",
            NEW_REPLICA_SET_CREATED,
            "a".into(),
            at(0),
        ),
    );
    set_condition(
        &mut status,
        new_condition(
            PROGRESSING,
            "True",
            NEW_REPLICA_SET_CREATED,
            "b".into(),
            at(5),
        ),
    );
    let progressing = condition(&status, PROGRESSING).unwrap();
    assert_eq!(
        progressing.message.as_deref(),
        Some("a"),
        "same reason: unchanged"
    );
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "c".into(), at(7)),
    );
    let progressing = condition(&status, PROGRESSING).unwrap();
    assert_eq!(progressing.last_transition_time, Some(Time(at(0))));
    assert_eq!(progressing.last_update_time, Some(Time(at(7))));
    set_condition(
        &mut status,
        new_condition(
            PROGRESSING,
            "False",
            PROGRESS_DEADLINE_EXCEEDED,
            "d".into(),
            at(9),
        ),
    );
    let progressing = condition(&status, PROGRESSING).unwrap();
    assert_eq!(progressing.last_transition_time, Some(Time(at(9))));
    assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
}

#[test]
fn progress_is_more_updated_ready_or_available_pods_or_fewer_old_ones() {
    let status = |replicas, updated, ready, available| DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        ..DeploymentStatus::default()
    };
    assert!(is_progressing(&status(10, 2, 8, 8), &status(10, 3, 8, 8)));
    assert!(is_progressing(&status(12, 2, 8, 8), &status(11, 2, 8, 8)));
    assert!(is_progressing(&status(10, 2, 8, 8), &status(10, 2, 9, 8)));
    assert!(!is_progressing(&status(10, 2, 8, 8), &status(10, 2, 8, 8)));
}

#[test]
fn the_deadline_runs_from_the_last_progress() {
    let mut d = deployment(3, percent("25%"), percent("25%"));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    let at = |seconds: i64| Timestamp::from_second(1_800_000_000 + seconds).unwrap();
    let mut status = DeploymentStatus::default();
    assert_eq!(deadline_at(&d, &status), None);
    set_condition(
        &mut status,
        new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "x".into(), at(10)),
    );
    assert_eq!(deadline_at(&d, &status), Some(at(40)));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
    assert_eq!(deadline_at(&d, &status), None);
}

#[test]
fn the_new_replica_set_is_the_oldest_with_the_template() {
    let d = deployment(3, percent("25%"), percent("25%"));
    let with = |name: &str, image: &str, created: i64| {
        let mut rs = annotated(replica_set(name, 1, 1, 1, true), 4, created);
        rs.spec.as_mut().unwrap().template = Some(template(image));
        rs
    };
    let mut sets = vec![
        with("c", "web:v1", 30),
        with("a", "web:v0", 10),
        with("b", "web:v1", 20),
    ];
    sort_by_creation(&mut sets);
    let index = find_new(&d, &sets).unwrap();
    assert_eq!(sets[index].metadata.name.as_deref(), Some("b"));
}
