//! Custom kinds made with `#[derive(CustomResource)]` get the built-in kinds' treatment: type
//! information, serialization with apiVersion and kind, a schema, strict decoding, defaulting and
//! validation through the scheme.

use orchestra_core::CustomResource;
use orchestra_core::manifest;
use orchestra_core::resource::custom::CustomResource as _;
use orchestra_core::resource::{ApiResource, DynamicObject, Resource, ResourceExt};
use orchestra_core::scheme::Scheme;
use orchestra_core::validation::Validate;
use orchestra_core::validation::field::{Error, ErrorList, Path};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A scheduled job.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[resource(
    group = "stable.example.com",
    version = "v1",
    kind = "CronTab",
    namespaced
)]
#[resource(status = "CronTabStatus", derive = "PartialEq")]
#[resource(defaults = "default_cron_tab", validate = "validate_cron_tab")]
#[serde(rename_all = "camelCase")]
pub struct CronTabSpec {
    /// Cron schedule.
    pub cron_spec: String,
    /// Image to run.
    pub image: String,
    /// How many copies run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// What the controller saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronTabStatus {
    /// When it last ran.
    pub last_run: Option<String>,
}

fn default_cron_tab(tab: &mut CronTab) {
    tab.spec.replicas.get_or_insert(1);
}

fn validate_cron_tab(tab: &CronTab) -> ErrorList {
    let mut errors = ErrorList::new();
    if tab.spec.cron_spec.split_whitespace().count() != 5 {
        errors.push(Error::invalid(
            &Path::new("spec").child("cronSpec"),
            tab.spec.cron_spec.as_str(),
            "must have five fields",
        ));
    }
    if tab.spec.replicas.is_some_and(|r| r < 0) {
        errors.push(Error::invalid(
            &Path::new("spec").child("replicas"),
            -1,
            "must be greater than or equal to 0",
        ));
    }
    errors
}

/// A cluster-scoped kind with no status and a plural Kubernetes would not guess.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[resource(
    group = "example.com",
    version = "v1alpha1",
    kind = "Gateway",
    plural = "gatewayz"
)]
pub struct GatewaySpec {
    /// Listening port.
    pub port: u16,
}

#[test]
fn type_information_comes_from_the_attributes() {
    assert_eq!(CronTab::api_version(&()), "stable.example.com/v1");
    assert_eq!(CronTab::plural(&()), "crontabs");
    assert!(CronTab::namespaced(&()));
    assert_eq!(Gateway::plural(&()), "gatewayz");
    assert!(!Gateway::namespaced(&()));
    let resource = ApiResource::of::<CronTab>();
    assert_eq!(resource.qualified_kind(), "CronTab.stable.example.com");
}

#[test]
fn objects_serialize_with_api_version_and_kind() {
    let mut tab = CronTab::new(
        "backup",
        CronTabSpec {
            cron_spec: "0 3 * * *".into(),
            image: "backup:1".into(),
            replicas: None,
        },
    );
    tab.status = Some(CronTabStatus {
        last_run: Some("today".into()),
    });
    let json = serde_json::to_value(&tab).unwrap();
    assert_eq!(json["apiVersion"], "stable.example.com/v1");
    assert_eq!(json["kind"], "CronTab");
    assert_eq!(json["spec"]["cronSpec"], "0 3 * * *");
    assert_eq!(json["status"]["lastRun"], "today");
    assert_eq!(
        serde_json::from_value::<CronTab>(json.clone()).unwrap(),
        tab
    );

    let dynamic: DynamicObject = DynamicObject::from_typed(&tab).unwrap();
    assert_eq!(dynamic.try_parse::<CronTab>().unwrap(), tab);

    let mut wrong = json;
    wrong["kind"] = "Gateway".into();
    assert!(serde_json::from_value::<CronTab>(wrong).is_err());

    let gateway = Gateway::new("edge", GatewaySpec { port: 443 });
    assert!(
        serde_json::to_value(&gateway)
            .unwrap()
            .get("status")
            .is_none()
    );
    assert!(gateway.status().is_none());
}

#[test]
fn the_schema_describes_the_object() {
    let schema = orchestra_core::schema::schema_for::<CronTab>().to_value();
    let properties = &schema["properties"];
    assert_eq!(properties["kind"]["enum"][0], "CronTab");
    assert!(properties.get("spec").is_some() && properties.get("status").is_some());
    let gateway = orchestra_core::schema::schema_for::<Gateway>().to_value();
    assert!(gateway["properties"].get("status").is_none());
}

#[test]
fn registered_custom_kinds_decode_default_and_validate_like_built_in_ones() {
    let mut scheme = Scheme::default();
    scheme.register::<CronTab>().register::<Gateway>();
    let text = "\
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: backup
spec:
  cronSpec: '0 3 * * *'
  image: backup:1
---
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: Bad_Name
  namespace: default
spec:
  cronSpec: every day
  image: backup:1
  imagee: typo
---
apiVersion: example.com/v1alpha1
kind: Gateway
metadata:
  name: edge
  namespace: default
spec:
  port: 443
status:
  ready: true
";
    let documents = manifest::parse_all(text).unwrap();
    let decoded = scheme.decode(&documents[0]).unwrap();
    assert_eq!(decoded.resource, ApiResource::of::<CronTab>());
    let tab: CronTab = decoded.object.try_parse().unwrap();
    assert_eq!(tab.spec.replicas, Some(1), "the defaults hook ran");
    assert_eq!(tab.name_any(), "backup");

    let error = scheme.decode(&documents[1]).unwrap_err();
    let fields: Vec<String> = error
        .problems
        .iter()
        .map(|p| p.error.field.to_string())
        .collect();
    assert_eq!(fields, ["spec.imagee", "metadata.name", "spec.cronSpec"]);
    assert_eq!(error.problems[2].position.map(|p| p.line), Some(15));

    let error = scheme.decode(&documents[2]).unwrap_err();
    let fields: Vec<String> = error
        .problems
        .iter()
        .map(|p| p.error.field.to_string())
        .collect();
    assert_eq!(
        fields,
        ["status", "metadata.namespace"],
        "no status, and cluster-scoped"
    );
}

#[test]
fn kinds_known_only_at_run_time_decode_as_dynamic_objects() {
    let mut scheme = Scheme::default();
    scheme.register_dynamic(ApiResource::new("example.com", "v1", "Widget", None, true));
    assert_eq!(
        scheme.resource("example.com/v1", "Widget").unwrap().plural,
        "widgets"
    );
    let documents = manifest::parse_all(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  labelz: {}\nspec:\n  anything: [1, 2]\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  anything: [1, 2]\n",
    )
    .unwrap();
    let error = scheme.decode(&documents[0]).unwrap_err();
    assert_eq!(error.problems[0].error.field.to_string(), "metadata.labelz");
    let decoded = scheme.decode(&documents[1]).unwrap();
    assert_eq!(decoded.object.data["spec"]["anything"][1], 2);
}

#[test]
fn validation_is_available_directly() {
    let tab = CronTab::new(
        "ok",
        CronTabSpec {
            cron_spec: "* * * * *".into(),
            image: "x".into(),
            replicas: Some(-1),
        },
    );
    assert_eq!(tab.validate().len(), 1);
}
