//! Manifest decode → encode → decode is lossless for every built-in kind.
//!
//! Objects are generated from each kind's own JSON schema (so every field the kind has can
//! appear, nested to a few levels), decoded into the typed kind, written back as YAML and as
//! JSON, read again with the manifest parser and decoded strictly: the result must equal the
//! object, and strict decoding must find no unknown field in what Orchestra itself wrote.

use orchestra_core::k8s::api::apps::v1::{Deployment, ReplicaSet};
use orchestra_core::k8s::api::coordination::v1::Lease;
use orchestra_core::k8s::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, ReplicationController, Secret, Service,
    ServiceAccount,
};
use orchestra_core::k8s::api::scheduling::v1::PriorityClass;
use orchestra_core::manifest::{self, encode_yaml};
use orchestra_core::resource::TypeMeta;
use orchestra_core::scheme::{self, Kind, Scheme};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

/// A small deterministic generator (SplitMix64): proptest picks the seed, so a failure names it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: [&str; 12] = [
    "web", "yes", "No", "0x1F", "1e3", "~", "null", "-", "a: b", "# c", "true", "",
];
const CHARS: [char; 24] = [
    'a', 'Z', '0', '9', ' ', '-', '_', '.', ':', '#', '"', '\'', '\\', '\n', '\t', '{', '[', '&',
    '*', '!', 'é', '日', '😀', '%',
];

fn string(rng: &mut Rng) -> String {
    if rng.chance(40) {
        return (*rng.pick(&WORDS)).to_owned();
    }
    let length = rng.below(12);
    (0..length).map(|_| *rng.pick(&CHARS)).collect()
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        rng.below(50),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

fn base64(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = (0..rng.below(9)).map(|_| rng.below(256) as u8).collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn integer(rng: &mut Rng, format: Option<&str>) -> Value {
    let extreme = rng.chance(10);
    match format {
        Some("int32") if extreme => json!(*rng.pick(&[i32::MIN, i32::MAX, 0, -1])),
        Some("int32") => json!(rng.below(2000) as i64 - 1000),
        _ if extreme => json!(*rng.pick(&[i64::MIN, i64::MAX, 0, -1])),
        _ => json!(rng.below(100_000) as i64 - 50_000),
    }
}

struct Generator<'a> {
    definitions: &'a Map<String, Value>,
    rng: Rng,
}

impl Generator<'_> {
    fn generate(&mut self, schema: &Value, depth: usize) -> Value {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/$defs/");
            let definition = self.definitions.get(name).cloned().unwrap_or(json!({}));
            return self.generate(&definition, depth);
        }
        if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
            return if self.rng.chance(50) {
                json!(self.rng.below(100))
            } else {
                json!(self.rng.pick(&["25%", "http", "100m", "1Gi", "0.5", "80"]))
            };
        }
        let format = schema.get("format").and_then(Value::as_str);
        match schema.get("type").and_then(Value::as_str) {
            Some("string") => match format {
                Some("date-time") => json!(timestamp(&mut self.rng)),
                Some("byte") => json!(base64(&mut self.rng)),
                _ => json!(string(&mut self.rng)),
            },
            Some("integer") => integer(&mut self.rng, format),
            Some("number") => json!(self.rng.below(1000) as f64 / 8.0 - 50.0),
            Some("boolean") => json!(self.rng.chance(50)),
            Some("array") => {
                let items = schema.get("items").cloned().unwrap_or(json!({}));
                let count = if depth > 6 { 0 } else { self.rng.below(3) };
                Value::Array(
                    (0..count)
                        .map(|_| self.generate(&items, depth + 1))
                        .collect(),
                )
            }
            _ => self.object(schema, depth),
        }
    }

    fn object(&mut self, schema: &Value, depth: usize) -> Value {
        let mut object = Map::new();
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let percent = match depth {
                0..=1 => 60,
                2..=3 => 35,
                4..=6 => 15,
                _ => 0,
            };
            for (name, property) in properties {
                if required.contains(&name.as_str()) || self.rng.chance(percent) {
                    object.insert(name.clone(), self.generate(property, depth + 1));
                }
            }
        } else if let Some(values) = schema.get("additionalProperties") {
            for _ in 0..self.rng.below(if depth > 6 { 1 } else { 3 }) {
                let key = string(&mut self.rng);
                let value = self.generate(values, depth + 1);
                object.insert(key, value);
            }
        }
        Value::Object(object)
    }
}

/// A random object of kind `K`, generated from its schema.
fn random_object<K: Kind>(seed: u64) -> Value {
    let schema = orchestra_core::schema::schema_for::<K>().to_value();
    let definitions = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut generator = Generator {
        definitions: &definitions,
        rng: Rng(seed),
    };
    let mut value = generator.generate(&schema, 0);
    let types = TypeMeta::of::<K>();
    value["apiVersion"] = json!(types.api_version);
    value["kind"] = json!(types.kind);
    value
}

fn round_trip<K: Kind + PartialEq + std::fmt::Debug>(seed: u64) -> Result<(), TestCaseError> {
    let generated = random_object::<K>(seed);
    let object: K = serde_json::from_value(generated.clone()).map_err(|error| {
        TestCaseError::fail(format!(
            "{}: generated object does not decode: {error}\n{generated:#}",
            K::kind(&())
        ))
    })?;
    let written = serde_json::to_value(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for text in [
        encode_yaml(&written),
        serde_json::to_string_pretty(&written).unwrap(),
    ] {
        let documents = manifest::parse_all(&text)
            .map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
        prop_assert_eq!(documents.len(), 1, "{}", text);
        let decoded: K = scheme::decode_strict(&documents[0])
            .map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
        prop_assert_eq!(&decoded, &object, "{}", text);
    }
    // The whole pipeline (defaulting, validation) takes any such object without panicking.
    let documents = manifest::parse_all(&encode_yaml(&written)).unwrap();
    let _ = Scheme::default().decode(&documents[0]);
    Ok(())
}

/// The number of cases: `default`, or `PROPTEST_CASES` for a longer hunt.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn pods_round_trip(seed in any::<u64>()) { round_trip::<Pod>(seed)?; }

    #[test]
    fn nodes_round_trip(seed in any::<u64>()) { round_trip::<Node>(seed)?; }

    #[test]
    fn namespaces_round_trip(seed in any::<u64>()) { round_trip::<Namespace>(seed)?; }

    #[test]
    fn services_round_trip(seed in any::<u64>()) { round_trip::<Service>(seed)?; }

    #[test]
    fn endpoints_round_trip(seed in any::<u64>()) { round_trip::<Endpoints>(seed)?; }

    #[test]
    fn service_accounts_round_trip(seed in any::<u64>()) { round_trip::<ServiceAccount>(seed)?; }

    #[test]
    fn secrets_round_trip(seed in any::<u64>()) { round_trip::<Secret>(seed)?; }

    #[test]
    fn config_maps_round_trip(seed in any::<u64>()) { round_trip::<ConfigMap>(seed)?; }

    #[test]
    fn events_round_trip(seed in any::<u64>()) { round_trip::<Event>(seed)?; }

    #[test]
    fn replication_controllers_round_trip(seed in any::<u64>()) { round_trip::<ReplicationController>(seed)?; }

    #[test]
    fn replica_sets_round_trip(seed in any::<u64>()) { round_trip::<ReplicaSet>(seed)?; }

    #[test]
    fn deployments_round_trip(seed in any::<u64>()) { round_trip::<Deployment>(seed)?; }

    #[test]
    fn leases_round_trip(seed in any::<u64>()) { round_trip::<Lease>(seed)?; }

    #[test]
    fn priority_classes_round_trip(seed in any::<u64>()) { round_trip::<PriorityClass>(seed)?; }
}

#[test]
fn generated_objects_are_rich() {
    // The generator reaches deep into a kind: a deployment's pod template, its containers' probes.
    let mut deepest = 0;
    for seed in 0..64 {
        let object = random_object::<Deployment>(seed);
        let text = object.to_string();
        deepest = deepest.max(text.len());
    }
    assert!(
        deepest > 2_000,
        "the largest generated deployment has {deepest} bytes"
    );
}
