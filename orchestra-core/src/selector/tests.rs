//! Property tests of both selector parsers: printing and parsing are inverse, no input makes
//! them panic, and label matching agrees with a reference model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

/// A DNS-1123 label, the pieces of a key prefix.
fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?"
}

/// A label key: an optional DNS subdomain prefix and a name, now and then a keyword.
fn key() -> impl Strategy<Value = String> {
    let name = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,14}[A-Za-z0-9])?";
    let prefixed = (prop::collection::vec(dns_label(), 1..4), name)
        .prop_map(|(labels, name)| format!("{}/{name}", labels.join(".")));
    prop_oneof![
        4 => name.prop_map(String::from),
        2 => prefixed,
        1 => prop_oneof![Just("in"), Just("notin")].prop_map(String::from),
    ]
}

/// A label value: possibly empty, now and then a keyword or as long as allowed.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "([A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?".prop_map(String::from),
        1 => prop_oneof![Just("in"), Just("notin"), Just("")].prop_map(String::from),
        1 => "[a-z0-9]{63}".prop_map(String::from),
    ]
}

fn operator() -> impl Strategy<Value = Operator> {
    prop_oneof![
        Just(Operator::Equals),
        Just(Operator::DoubleEquals),
        Just(Operator::NotEquals),
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
        Just(Operator::GreaterThan),
        Just(Operator::LessThan),
    ]
}

fn values_for(operator: Operator) -> BoxedStrategy<Vec<String>> {
    match operator {
        Operator::In | Operator::NotIn => prop::collection::vec(value(), 1..5).boxed(),
        Operator::Exists | Operator::DoesNotExist => Just(Vec::new()).boxed(),
        Operator::GreaterThan | Operator::LessThan => {
            (0..=i64::MAX).prop_map(|n| vec![n.to_string()]).boxed()
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            value().prop_map(|value| vec![value]).boxed()
        }
    }
}

fn requirement() -> impl Strategy<Value = Requirement> {
    (key(), operator())
        .prop_flat_map(|(key, operator)| (Just(key), Just(operator), values_for(operator)))
        .prop_filter_map(
            "every generated requirement is valid",
            |(key, op, values)| Requirement::new(key, op, values).ok(),
        )
}

fn selector() -> impl Strategy<Value = Selector> {
    prop::collection::vec(requirement(), 0..6).prop_map(Selector::new)
}

/// Strings made mostly of the characters both grammars care about.
fn selector_like_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("in".to_owned()),
        Just("notin".to_owned()),
        Just("\\".to_owned()),
        "[a-z0-9./_-]{1,4}",
        "[ \t\r\n=!(),<>\\\\]",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// The reference model of one requirement, straight from Kubernetes' documentation.
fn model_matches(
    key: &str,
    operator: Operator,
    values: &[String],
    labels: &BTreeMap<String, String>,
) -> bool {
    let label = labels.get(key);
    let listed = |value: &String| values.contains(value);
    match operator {
        Operator::Equals | Operator::DoubleEquals | Operator::In => label.is_some_and(listed),
        Operator::NotEquals | Operator::NotIn => !label.is_some_and(listed),
        Operator::Exists => label.is_some(),
        Operator::DoesNotExist => label.is_none(),
        Operator::GreaterThan | Operator::LessThan => {
            let bound: Option<i128> = values.first().and_then(|v| v.parse().ok());
            let actual: Option<i128> = label.and_then(|v| v.parse::<i64>().ok()).map(i128::from);
            match (actual, bound) {
                (Some(actual), Some(bound)) if operator == Operator::GreaterThan => actual > bound,
                (Some(actual), Some(bound)) => actual < bound,
                _ => false,
            }
        }
    }
}

/// Writes a requirement by hand, with the given padding around tokens, so that the parser (not
/// only the printer) is exercised.
fn write_requirement(key: &str, operator: Operator, values: &[String], pad: &str) -> String {
    match operator {
        Operator::Exists => key.to_owned(),
        Operator::DoesNotExist => format!("!{pad}{key}"),
        Operator::In | Operator::NotIn => {
            // Each value once: Kubernetes' parser reads `(a,,)` as an error.
            let mut distinct: Vec<&str> = Vec::new();
            for value in values {
                if !distinct.contains(&value.as_str()) {
                    distinct.push(value);
                }
            }
            format!(
                "{key} {operator}{pad}({pad}{}{pad})",
                distinct.join(&format!("{pad},{pad}"))
            )
        }
        Operator::GreaterThan => format!("{key}{pad}>{pad}{}", values.join("")),
        Operator::LessThan => format!("{key}{pad}<{pad}{}", values.join("")),
        _ => format!("{key}{pad}{operator}{pad}{}", values.join("")),
    }
}

/// A requirement over a few keys and values, so that label maps often hit them.
fn small_requirement() -> impl Strategy<Value = (String, Operator, Vec<String>)> {
    let small_value = prop_oneof![
        Just("a"),
        Just("b"),
        Just(""),
        Just("1"),
        Just("7"),
        Just("12")
    ]
    .prop_map(String::from);
    let small_key = prop_oneof![Just("x"), Just("y"), Just("example.com/z")].prop_map(String::from);
    (small_key, operator()).prop_flat_map(move |(key, operator)| {
        let values = match operator {
            Operator::In | Operator::NotIn => {
                prop::collection::vec(small_value.clone(), 1..4).boxed()
            }
            Operator::Exists | Operator::DoesNotExist => Just(Vec::new()).boxed(),
            Operator::GreaterThan | Operator::LessThan => {
                prop_oneof![Just("0"), Just("1"), Just("7"), Just("12")]
                    .prop_map(|v| vec![v.to_owned()])
                    .boxed()
            }
            _ => small_value.clone().prop_map(|v| vec![v]).boxed(),
        };
        (Just(key), Just(operator), values)
    })
}

fn small_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key =
        prop_oneof![Just("x"), Just("y"), Just("example.com/z"), Just("w")].prop_map(String::from);
    let value = prop_oneof![
        Just("a"),
        Just("b"),
        Just(""),
        Just("1"),
        Just("7"),
        Just("12"),
        Just("-3"),
        Just("x1")
    ]
    .prop_map(String::from);
    prop::collection::btree_map(key, value, 0..4)
}

fn field_requirement() -> impl Strategy<Value = FieldRequirement> {
    let field = "[a-zA-Z0-9.]{1,12}";
    let value = prop_oneof![
        3 => "[a-z0-9=,\\\\! ]{0,8}",
        1 => any::<String>(),
    ];
    let operator = prop_oneof![Just(FieldOperator::Equals), Just(FieldOperator::NotEquals)];
    (field, operator, value)
        .prop_map(|(field, operator, value)| FieldRequirement::new(field, operator, value))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn label_selectors_print_and_parse_back(selector in selector()) {
        let printed = selector.to_string();
        let parsed = Selector::parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&selector), "{}", printed);
        let reprinted = parsed.map(|s| s.to_string());
        prop_assert_eq!(reprinted, Ok(printed));
    }

    #[test]
    fn label_selectors_survive_serde(selector in selector()) {
        let json = serde_json::to_string(&selector).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(serde_json::from_str::<Selector>(&json).ok(), Some(selector));
    }

    #[test]
    fn label_selector_conversion_keeps_the_meaning(
        requirements in prop::collection::vec(small_requirement(), 0..4),
        labels in small_labels(),
    ) {
        let selector: Selector = requirements
            .into_iter()
            .filter(|(_, operator, _)| !matches!(operator, Operator::GreaterThan | Operator::LessThan))
            .filter_map(|(key, operator, values)| Requirement::new(key, operator, values).ok())
            .collect();
        let label_selector = selector.to_label_selector();
        prop_assert!(matches!(label_selector, Ok(Some(_))), "{}: {:?}", selector, label_selector);
        let back = Selector::from_label_selector(label_selector.ok().flatten().as_ref());
        prop_assert!(back.is_ok(), "{}: {:?}", selector, back);
        let back = back.unwrap_or_else(|_| Selector::nothing());
        prop_assert_eq!(back.matches(&labels), selector.matches(&labels), "{} -> {} on {:?}", selector, back, labels);
    }

    #[test]
    fn parsers_never_panic(input in selector_like_string()) {
        // Whatever they return, parsing again what they print gives the same selector.
        if let Ok(selector) = Selector::parse(&input) {
            let printed = selector.to_string();
            prop_assert_eq!(Selector::parse(&printed), Ok(selector), "{:?} -> {:?}", input, printed);
        }
        if let Ok(selector) = FieldSelector::parse(&input) {
            let printed = selector.to_string();
            prop_assert_eq!(FieldSelector::parse(&printed), Ok(selector), "{:?} -> {:?}", input, printed);
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_strings(input in any::<String>()) {
        let label = Selector::parse(&input);
        if let Err(error) = &label {
            prop_assert!(error.position() <= input.len());
        }
        let field = FieldSelector::parse(&input);
        if let Err(error) = &field {
            prop_assert!(error.position() <= input.len());
        }
    }

    #[test]
    fn label_matching_agrees_with_the_model(
        requirements in prop::collection::vec(small_requirement(), 0..4),
        pad in prop_oneof![Just(""), Just(" "), Just("\t "), Just("\n")],
        labels in small_labels(),
    ) {
        let text = requirements
            .iter()
            .map(|(key, operator, values)| write_requirement(key, *operator, values, pad))
            .collect::<Vec<_>>()
            .join(&format!("{pad},{pad}"));
        let parsed = Selector::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        let selector = parsed.unwrap_or_else(|_| Selector::nothing());
        let expected = requirements
            .iter()
            .all(|(key, operator, values)| model_matches(key, *operator, values, &labels));
        prop_assert_eq!(selector.matches(&labels), expected, "{:?} on {:?}", text, labels);
    }

    #[test]
    fn field_selectors_print_and_parse_back(
        requirements in prop::collection::vec(field_requirement(), 0..6),
    ) {
        let selector = FieldSelector::new(requirements);
        let printed = selector.to_string();
        let parsed = FieldSelector::parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&selector), "{:?}", printed);
        prop_assert_eq!(parsed.map(|s| s.to_string()), Ok(printed));
    }
}
