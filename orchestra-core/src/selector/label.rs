//! Label selectors: [`Selector`], its [`Requirement`]s and their [`Operator`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::resource::{Resource, ResourceExt};
use crate::validation::names;

use super::lexer;

/// How a [`Requirement`] relates a label's value to its values.
///
/// [`Display`](fmt::Display) writes Kubernetes' name of the operator (`selection.Operator`):
/// `=`, `==`, `!=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`. In selector strings `gt` and `lt`
/// are written `>` and `<`, and `exists` is a bare key.
///
/// # Examples
///
/// ```
/// use orchestra_core::selector::{Operator, Selector};
///
/// let selector: Selector = "tier notin (cache),!canary".parse()?;
/// let operators: Vec<Operator> = selector.requirements().iter().map(|r| r.operator()).collect();
/// assert_eq!(operators, [Operator::DoesNotExist, Operator::NotIn]);
/// assert_eq!(Operator::GreaterThan.to_string(), "gt");
/// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`: the label is present with that value.
    Equals,
    /// `key==value`: the same as [`Operator::Equals`], kept apart so that it prints as written.
    DoubleEquals,
    /// `key!=value`: the label is absent, or present with another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent, or present with none of the values.
    NotIn,
    /// `key`: the label is present, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is present and its value, read as an integer, is greater.
    GreaterThan,
    /// `key<5`: the label is present and its value, read as an integer, is smaller.
    LessThan,
}

impl Operator {
    /// Kubernetes' name of the operator (`selection.Operator`): `=`, `==`, `!=`, `in`, `notin`,
    /// `exists`, `!`, `gt` or `lt`.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::Operator;
    ///
    /// assert_eq!(Operator::NotIn.as_str(), "notin");
    /// assert_eq!(Operator::DoesNotExist.as_str(), "!");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something with labels that a [`Selector`] can match: a map of labels.
///
/// Implemented for `BTreeMap<String, String>` (what [`ResourceExt::labels`] returns) and
/// `HashMap<String, String>`.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use orchestra_core::selector::{LabelSource, Selector};
///
/// let labels = HashMap::from([("app".to_owned(), "web".to_owned())]);
/// assert_eq!(labels.label("app"), Some("web"));
/// assert!(Selector::parse("app=web")?.matches(&labels));
/// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
/// ```
pub trait LabelSource {
    /// The value of the label `key`, if there is such a label.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSource for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> LabelSource for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: LabelSource + ?Sized> LabelSource for &T {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// One condition of a [`Selector`]: a label key, an [`Operator`] and a set of values.
///
/// A requirement is always valid: its key is a qualified name, its values are label values, and
/// it has as many values as its operator takes (one for `=`, `==`, `!=`, `>` and `<`, at least
/// one for `in` and `notin`, none for existence tests), as Kubernetes' `NewRequirement` checks.
/// The values are kept as a sorted set.
///
/// # Examples
///
/// ```
/// use orchestra_core::selector::{Operator, Requirement};
///
/// let tier = Requirement::new("tier", Operator::NotIn, ["frontend", "backend"])?;
/// assert_eq!(tier.to_string(), "tier notin (backend,frontend)");
/// assert!(Requirement::new("tier", Operator::In, Vec::<String>::new()).is_err());
/// assert!(Requirement::new("bad key", Operator::Exists, Vec::<String>::new()).is_err());
/// # Ok::<(), orchestra_core::selector::RequirementError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// A requirement on the label `key`, checked as Kubernetes' `NewRequirement` checks it.
    ///
    /// # Errors
    ///
    /// The first problem found, in Kubernetes' order: an invalid key, the wrong number of values
    /// for the operator, a value that is not an integer for `>` and `<`, an invalid label value.
    pub fn new<V: Into<String>>(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Requirement, RequirementError> {
        let key = key.into();
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        check_key(&key)?;
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    return Err(RequirementError::EmptyValues { key, operator });
                }
            }
            Operator::Equals
            | Operator::DoubleEquals
            | Operator::NotEquals
            | Operator::GreaterThan
            | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(RequirementError::NotOneValue {
                        key,
                        operator,
                        count: values.len(),
                    });
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(RequirementError::UnexpectedValues { key, operator });
                }
            }
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for value in &values {
                check_integer(&key, value)?;
            }
        }
        for value in &values {
            check_label_value(&key, value)?;
        }
        Ok(Requirement {
            key,
            operator,
            values: values.into_iter().collect(),
        })
    }

    /// A requirement the caller has checked already (the parser checks as it reads).
    pub(super) fn new_unchecked(
        key: &str,
        operator: Operator,
        values: BTreeSet<String>,
    ) -> Requirement {
        Requirement {
            key: key.to_owned(),
            operator,
            values,
        }
    }

    /// `key=value`.
    ///
    /// # Errors
    ///
    /// An invalid key or value.
    pub fn equals(
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::Equals, [value])
    }

    /// `key!=value`.
    ///
    /// # Errors
    ///
    /// An invalid key or value.
    pub fn not_equals(
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::NotEquals, [value])
    }

    /// `key in (values)`.
    ///
    /// # Errors
    ///
    /// An invalid key or value, or no values.
    pub fn in_set<V: Into<String>>(
        key: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::In, values)
    }

    /// `key notin (values)`.
    ///
    /// # Errors
    ///
    /// An invalid key or value, or no values.
    pub fn not_in_set<V: Into<String>>(
        key: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::NotIn, values)
    }

    /// `key`: the label exists.
    ///
    /// # Errors
    ///
    /// An invalid key.
    pub fn exists(key: impl Into<String>) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::Exists, Vec::<String>::new())
    }

    /// `!key`: the label does not exist.
    ///
    /// # Errors
    ///
    /// An invalid key.
    pub fn does_not_exist(key: impl Into<String>) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::DoesNotExist, Vec::<String>::new())
    }

    /// `key>value`.
    ///
    /// # Errors
    ///
    /// An invalid key, or a negative value (a label value cannot start with `-`).
    pub fn greater_than(
        key: impl Into<String>,
        value: i64,
    ) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::GreaterThan, [value.to_string()])
    }

    /// `key<value`.
    ///
    /// # Errors
    ///
    /// An invalid key, or a negative value (a label value cannot start with `-`).
    pub fn less_than(key: impl Into<String>, value: i64) -> Result<Requirement, RequirementError> {
        Requirement::new(key, Operator::LessThan, [value.to_string()])
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted (empty for [`Operator::Exists`] and [`Operator::DoesNotExist`]).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    ///
    /// `=`, `==` and `in` need the label, with one of the values; `!=` and `notin` are satisfied
    /// by an absent label too. `>` and `<` need the label with an integer value (a value that is
    /// not an integer does not match).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use orchestra_core::selector::Requirement;
    ///
    /// let labels = BTreeMap::from([("replicas".to_owned(), "3".to_owned())]);
    /// assert!(Requirement::greater_than("replicas", 2)?.matches(&labels));
    /// assert!(Requirement::not_equals("tier", "cache")?.matches(&labels));
    /// # Ok::<(), orchestra_core::selector::RequirementError>(())
    /// ```
    pub fn matches<L: LabelSource + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|value| self.values.contains(value))
            }
            Operator::NotEquals | Operator::NotIn => {
                value.is_none_or(|value| !self.values.contains(value))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(label)) = value.map(str::parse::<i64>) else {
                    return false;
                };
                let mut values = self.values.iter();
                let (Some(Ok(bound)), None) =
                    (values.next().map(|v| v.parse::<i64>()), values.next())
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    label > bound
                } else {
                    label < bound
                }
            }
        }
    }
}

/// Kubernetes' canonical form: `key`, `!key`, `key=value`, `key==value`, `key!=value`,
/// `key>5`, `key<5`, `key in (a,b)`, `key notin (a,b)`, the values sorted.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        f.write_str(&self.key)?;
        f.write_str(operator)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        for (index, value) in self.values.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            f.write_str(value)?;
        }
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: requirements that labels must all meet, or the selector of nothing.
///
/// Parse one from Kubernetes' string syntax ([`Selector::parse`], [`FromStr`]), build one from
/// [`Requirement`]s, or convert one from a Kubernetes [`LabelSelector`]
/// ([`Selector::from_label_selector`]) or a map of labels ([`Selector::from_map`]). The
/// requirements are kept sorted by key, as Kubernetes keeps them, and [`Display`](fmt::Display)
/// writes Kubernetes' canonical form, which parses back to an equal selector. Serde reads and
/// writes the string form.
///
/// The empty selector ([`Selector::everything`], also the [`Default`]) matches every set of
/// labels; [`Selector::nothing`] matches none.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use orchestra_core::selector::Selector;
///
/// let selector: Selector =
///     "environment in (production, qa),tier notin (frontend,backend),!canary".parse()?;
/// assert_eq!(
///     selector.to_string(),
///     "!canary,environment in (production,qa),tier notin (backend,frontend)"
/// );
///
/// let labels = BTreeMap::from([
///     ("environment".to_owned(), "qa".to_owned()),
///     ("tier".to_owned(), "cache".to_owned()),
/// ]);
/// assert!(selector.matches(&labels));
/// assert!(Selector::everything().matches(&labels));
/// assert!(!Selector::nothing().matches(&labels));
/// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    inner: Inner,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Inner {
    /// Every requirement must hold; none selects everything.
    All(Vec<Requirement>),
    /// Selects nothing.
    Nothing,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner::All(Vec::new())
    }
}

impl Selector {
    /// The selector that matches every set of labels: no requirements (`""`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// The selector that matches nothing, what Kubernetes makes of an absent
    /// [`LabelSelector`].
    ///
    /// Like Kubernetes' `labels.Nothing()`, it prints as the empty string, which parses back
    /// as [`Selector::everything`]; it is the one selector whose string form does not round-trip.
    pub fn nothing() -> Selector {
        Selector {
            inner: Inner::Nothing,
        }
    }

    /// A selector of all `requirements`, sorted by key (requirements on one key keep their
    /// order).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::{Requirement, Selector};
    ///
    /// let selector = Selector::new([
    ///     Requirement::equals("tier", "web")?,
    ///     Requirement::exists("app")?,
    /// ]);
    /// assert_eq!(selector.to_string(), "app,tier=web");
    /// # Ok::<(), orchestra_core::selector::RequirementError>(())
    /// ```
    pub fn new(requirements: impl IntoIterator<Item = Requirement>) -> Selector {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            inner: Inner::All(requirements),
        }
    }

    /// Parses Kubernetes' label selector syntax, as `labels.Parse` does.
    ///
    /// ```text
    /// selector    ::= "" | requirement ("," requirement)*
    /// requirement ::= KEY | "!" KEY | KEY ("=" | "==" | "!=" | ">" | "<") VALUE
    ///               | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
    /// ```
    ///
    /// Whitespace may stand between tokens. A value may be empty (`key=`, `key in (a,)`;
    /// `key in ()` is the set of the empty value). Keys must be qualified names, values label
    /// values, and the values of `>` and `<` integers.
    ///
    /// # Errors
    ///
    /// A [`ParseSelectorError`] with the byte offset of the offending token.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::Selector;
    ///
    /// assert_eq!(Selector::parse("b=1,a!=2")?.to_string(), "a!=2,b=1");
    /// assert!(Selector::parse("")?.is_empty());
    /// let error = Selector::parse("a,,b").unwrap_err();
    /// assert_eq!(error.position(), 2);
    /// assert_eq!(
    ///     error.to_string(),
    ///     "unable to parse label selector at byte 2: found ',', expected: identifier after ','"
    /// );
    /// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
    /// ```
    pub fn parse(input: &str) -> Result<Selector, ParseSelectorError> {
        Ok(Selector {
            inner: Inner::All(lexer::parse(input)?),
        })
    }

    /// The selector of exactly these labels (`key=value` for each), as Kubernetes'
    /// `ValidatedSelectorFromSet`: the equality selector of a ReplicationController or a
    /// Service. An empty map selects everything.
    ///
    /// # Errors
    ///
    /// The first invalid key or value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use orchestra_core::selector::Selector;
    ///
    /// let map = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    /// assert_eq!(Selector::from_map(&map)?.to_string(), "app=web");
    /// assert!(Selector::from_map(&BTreeMap::new())?.is_empty());
    /// # Ok::<(), orchestra_core::selector::RequirementError>(())
    /// ```
    pub fn from_map(labels: &BTreeMap<String, String>) -> Result<Selector, RequirementError> {
        labels
            .iter()
            .map(|(key, value)| Requirement::equals(key, value))
            .collect()
    }

    /// The selector of exactly these labels, without checking them, as Kubernetes'
    /// `SelectorFromValidatedSet`: for labels already validated (those of a stored object).
    ///
    /// Matching works whatever the map holds; only the string form of a selector built from
    /// invalid labels may not parse back.
    pub fn from_validated_map(labels: &BTreeMap<String, String>) -> Selector {
        Selector::new(labels.iter().map(|(key, value)| Requirement {
            key: key.clone(),
            operator: Operator::Equals,
            values: BTreeSet::from([value.clone()]),
        }))
    }

    /// The selector of a Kubernetes [`LabelSelector`], as `metav1.LabelSelectorAsSelector`
    /// makes it: `None` selects nothing, an empty selector everything; `matchLabels` become
    /// `=` requirements and `matchExpressions` `in`, `notin`, existence requirements.
    ///
    /// # Errors
    ///
    /// An operator other than `In`, `NotIn`, `Exists` and `DoesNotExist`, missing values for
    /// `In` and `NotIn`, values for `Exists` and `DoesNotExist`, an invalid key or value.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::{
    ///     LabelSelector, LabelSelectorRequirement,
    /// };
    /// use orchestra_core::selector::Selector;
    ///
    /// let label_selector = LabelSelector {
    ///     match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
    ///     match_expressions: Some(vec![LabelSelectorRequirement {
    ///         key: "tier".into(),
    ///         operator: "In".into(),
    ///         values: Some(vec!["frontend".into()]),
    ///     }]),
    /// };
    /// let selector = Selector::from_label_selector(Some(&label_selector))?;
    /// assert_eq!(selector.to_string(), "app=web,tier in (frontend)");
    /// assert!(Selector::from_label_selector(None)?.is_nothing());
    /// assert!(Selector::from_label_selector(Some(&LabelSelector::default()))?.is_empty());
    /// # Ok::<(), orchestra_core::selector::LabelSelectorError>(())
    /// ```
    pub fn from_label_selector(
        label_selector: Option<&LabelSelector>,
    ) -> Result<Selector, LabelSelectorError> {
        let Some(label_selector) = label_selector else {
            return Ok(Selector::nothing());
        };
        let mut requirements = Vec::new();
        for (key, value) in label_selector.match_labels.iter().flatten() {
            requirements.push(Requirement::equals(key, value)?);
        }
        for expression in label_selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(LabelSelectorError::UnknownOperator {
                        operator: other.to_owned(),
                    });
                }
            };
            let values = expression.values.iter().flatten().cloned();
            requirements.push(Requirement::new(&expression.key, operator, values)?);
        }
        Ok(Selector::new(requirements))
    }

    /// This selector as a Kubernetes [`LabelSelector`]; `None` for [`Selector::nothing`].
    ///
    /// `=` and `==` become `matchLabels` (a second value for one key, which no labels can meet
    /// together with the first, becomes an `In` expression so that the meaning is kept),
    /// `in`, `notin` and existence tests `matchExpressions`, and `key!=value` the equivalent
    /// `key notin (value)`.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::Unsupported`] for `>` and `<`, which `LabelSelector` lacks.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::Selector;
    ///
    /// let selector = Selector::parse("app=web,!canary")?;
    /// let label_selector = selector.to_label_selector()?.unwrap_or_default();
    /// assert_eq!(label_selector.match_labels.as_ref().map(|m| m.len()), Some(1));
    /// assert_eq!(Selector::from_label_selector(Some(&label_selector))?, selector);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_label_selector(&self) -> Result<Option<LabelSelector>, LabelSelectorError> {
        let Inner::All(requirements) = &self.inner else {
            return Ok(None);
        };
        let mut match_labels = BTreeMap::new();
        let mut match_expressions = Vec::new();
        for requirement in requirements {
            let mut expression = |operator: &str, values: Option<Vec<String>>| {
                match_expressions.push(LabelSelectorRequirement {
                    key: requirement.key.clone(),
                    operator: operator.to_owned(),
                    values,
                });
            };
            let values = || Some(requirement.values.iter().cloned().collect::<Vec<_>>());
            match requirement.operator {
                Operator::Equals | Operator::DoubleEquals => {
                    let Some(value) = requirement.values.first() else {
                        continue;
                    };
                    match match_labels.get(&requirement.key) {
                        None => {
                            match_labels.insert(requirement.key.clone(), value.clone());
                        }
                        Some(existing) if existing == value => {}
                        Some(_) => expression("In", values()),
                    }
                }
                Operator::NotEquals | Operator::NotIn => expression("NotIn", values()),
                Operator::In => expression("In", values()),
                Operator::Exists => expression("Exists", None),
                Operator::DoesNotExist => expression("DoesNotExist", None),
                Operator::GreaterThan | Operator::LessThan => {
                    return Err(LabelSelectorError::Unsupported {
                        operator: requirement.operator,
                    });
                }
            }
        }
        Ok(Some(LabelSelector {
            match_labels: (!match_labels.is_empty()).then_some(match_labels),
            match_expressions: (!match_expressions.is_empty()).then_some(match_expressions),
        }))
    }

    /// This selector with one more requirement, kept in key order, as Kubernetes' `Add`.
    /// [`Selector::nothing`] stays nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::{Requirement, Selector};
    ///
    /// let selector = Selector::parse("tier=web")?.and(Requirement::exists("app")?);
    /// assert_eq!(selector.to_string(), "app,tier=web");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn and(mut self, requirement: Requirement) -> Selector {
        if let Inner::All(requirements) = &mut self.inner {
            let index = requirements.partition_point(|existing| existing.key <= requirement.key);
            requirements.insert(index, requirement);
        }
        self
    }

    /// Whether this selector has no requirements and so matches everything (false for
    /// [`Selector::nothing`]).
    pub fn is_empty(&self) -> bool {
        matches!(&self.inner, Inner::All(requirements) if requirements.is_empty())
    }

    /// Whether this is [`Selector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.inner == Inner::Nothing
    }

    /// The requirements, sorted by key (none for [`Selector::everything`] and
    /// [`Selector::nothing`]).
    pub fn requirements(&self) -> &[Requirement] {
        match &self.inner {
            Inner::All(requirements) => requirements,
            Inner::Nothing => &[],
        }
    }

    /// Whether `labels` meet every requirement (always for the empty selector, never for
    /// [`Selector::nothing`]).
    pub fn matches<L: LabelSource + ?Sized>(&self, labels: &L) -> bool {
        match &self.inner {
            Inner::All(requirements) => requirements
                .iter()
                .all(|requirement| requirement.matches(labels)),
            Inner::Nothing => false,
        }
    }

    /// Whether the labels of `object` meet every requirement.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::k8s::api::core::v1::Pod;
    /// use orchestra_core::resource::ResourceExt;
    /// use orchestra_core::selector::Selector;
    ///
    /// let mut pod = Pod::default();
    /// pod.labels_mut().insert("app".into(), "web".into());
    /// assert!(Selector::parse("app in (web,api)")?.matches_object(&pod));
    /// assert!(!Selector::parse("app,tier")?.matches_object(&pod));
    /// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
    /// ```
    pub fn matches_object<K: Resource + ?Sized>(&self, object: &K) -> bool {
        self.matches(object.labels())
    }

    /// The one value this selector requires of the label `key`, if it requires exactly one, as
    /// Kubernetes' `RequiresExactMatch`: the first requirement on `key` decides, and only `=`,
    /// `==` and a one-value `in` require one value.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::Selector;
    ///
    /// let selector = Selector::parse("app=web,tier in (a,b)")?;
    /// assert_eq!(selector.requires_exact_match("app"), Some("web"));
    /// assert_eq!(selector.requires_exact_match("tier"), None);
    /// # Ok::<(), orchestra_core::selector::ParseSelectorError>(())
    /// ```
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements().iter().find(|r| r.key == key)?;
        match requirement.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In
                if requirement.values.len() == 1 =>
            {
                requirement.values.first().map(String::as_str)
            }
            _ => None,
        }
    }
}

/// Kubernetes' canonical form: the requirements in key order, joined by `,`. Both the empty
/// selector and [`Selector::nothing`] print as the empty string.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements().iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = ParseSelectorError;

    fn from_str(input: &str) -> Result<Selector, ParseSelectorError> {
        Selector::parse(input)
    }
}

impl FromIterator<Requirement> for Selector {
    fn from_iter<I: IntoIterator<Item = Requirement>>(requirements: I) -> Selector {
        Selector::new(requirements)
    }
}

impl TryFrom<&LabelSelector> for Selector {
    type Error = LabelSelectorError;

    fn try_from(label_selector: &LabelSelector) -> Result<Selector, LabelSelectorError> {
        Selector::from_label_selector(Some(label_selector))
    }
}

impl TryFrom<LabelSelector> for Selector {
    type Error = LabelSelectorError;

    fn try_from(label_selector: LabelSelector) -> Result<Selector, LabelSelectorError> {
        Selector::from_label_selector(Some(&label_selector))
    }
}

impl TryFrom<&Selector> for LabelSelector {
    type Error = LabelSelectorError;

    fn try_from(selector: &Selector) -> Result<LabelSelector, LabelSelectorError> {
        selector
            .to_label_selector()?
            .ok_or(LabelSelectorError::Nothing)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Selector, D::Error> {
        let text = String::deserialize(deserializer)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A requirement is not valid: what Kubernetes' `NewRequirement` rejects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequirementError {
    /// The key is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Kubernetes' messages, joined by `; `.
        reason: String,
    },
    /// A value is not a label value.
    #[error("invalid label value: {value:?}: at key: {key:?}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Kubernetes' messages, joined by `; `.
        reason: String,
    },
    /// `in` or `notin` without values.
    #[error("key {key:?}: for 'in', 'notin' operators, values set can't be empty")]
    EmptyValues {
        /// The key.
        key: String,
        /// The operator.
        operator: Operator,
    },
    /// `=`, `==`, `!=`, `>` or `<` without exactly one value.
    #[error("key {key:?}: operator '{operator}' requires exactly one value, found {count}")]
    NotOneValue {
        /// The key.
        key: String,
        /// The operator.
        operator: Operator,
        /// How many values there were.
        count: usize,
    },
    /// An existence test with values.
    #[error("key {key:?}: values set must be empty for exists and does not exist")]
    UnexpectedValues {
        /// The key.
        key: String,
        /// The operator.
        operator: Operator,
    },
    /// The value of `>` or `<` is not an integer.
    #[error(
        "invalid label value: {value:?}: at key: {key:?}: for 'gt', 'lt' operators, the value must be an integer"
    )]
    NotAnInteger {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// A string is not a label selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSelectorError {
    /// A token the grammar does not allow where it stands.
    #[error(
        "unable to parse label selector at byte {position}: found '{found}', expected: {expected}"
    )]
    Unexpected {
        /// Byte offset of the token.
        position: usize,
        /// The token's text, or `end of string`.
        found: String,
        /// What the grammar allows there, as Kubernetes words it.
        expected: &'static str,
    },
    /// A well-formed requirement that is not valid: a bad key or value.
    #[error("unable to parse label selector at byte {position}: {error}")]
    InvalidRequirement {
        /// Byte offset of the offending key or value.
        position: usize,
        /// What is wrong with it.
        error: RequirementError,
    },
}

impl ParseSelectorError {
    /// Byte offset in the input of the offending token.
    pub fn position(&self) -> usize {
        match self {
            ParseSelectorError::Unexpected { position, .. }
            | ParseSelectorError::InvalidRequirement { position, .. } => *position,
        }
    }
}

/// A Kubernetes [`LabelSelector`] and a [`Selector`] do not convert.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelSelectorError {
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
    /// A requirement of the selector is not valid.
    #[error(transparent)]
    Requirement(#[from] RequirementError),
    /// `>` and `<` have no `LabelSelector` form.
    #[error("'{operator}' isn't supported in label selectors")]
    Unsupported {
        /// The operator.
        operator: Operator,
    },
    /// [`Selector::nothing`] is an absent `LabelSelector`, not a `LabelSelector`.
    #[error("the selector of nothing has no LabelSelector form: it is an absent selector")]
    Nothing,
}

pub(super) fn check_key(key: &str) -> Result<(), RequirementError> {
    let errors = names::qualified_name(key);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RequirementError::InvalidKey {
            key: key.to_owned(),
            reason: errors.join("; "),
        })
    }
}

pub(super) fn check_label_value(key: &str, value: &str) -> Result<(), RequirementError> {
    let errors = names::label_value(value);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RequirementError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: errors.join("; "),
        })
    }
}

pub(super) fn check_integer(key: &str, value: &str) -> Result<(), RequirementError> {
    match value.parse::<i64>() {
        Ok(_) => Ok(()),
        Err(_) => Err(RequirementError::NotAnInteger {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A selector string, a set of labels, and whether they match.
    type MatchCase<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    /// A selector string and the requirements it parses to.
    type ParseCase<'a> = (&'a str, &'a [(&'a str, Operator, &'a [&'a str])]);

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    fn parse(input: &str) -> Selector {
        match Selector::parse(input) {
            Ok(selector) => selector,
            Err(error) => panic!("{input:?}: {error}"),
        }
    }

    fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        match Requirement::new(key, operator, values.iter().copied()) {
            Ok(requirement) => requirement,
            Err(error) => panic!("{key} {operator} {values:?}: {error}"),
        }
    }

    // Kubernetes' TestSelectorParse: good strings print back without their spaces.
    #[test]
    fn parses_and_prints_kubernetes_good_strings() {
        let good = [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ];
        for input in good {
            assert_eq!(
                parse(input).to_string(),
                input.replace(' ', ""),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_kubernetes_bad_strings() {
        for input in ["x=a||y=b", "x==a==b", "!x=a", "x<a"] {
            assert!(Selector::parse(input).is_err(), "{input:?}");
        }
    }

    // Kubernetes' TestDeterministicParse.
    #[test]
    fn parses_deterministically() {
        assert_eq!(parse("x=a,a=x"), parse("a=x,x=a"));
        assert_eq!(parse("x=a,a=x").to_string(), "a=x,x=a");
    }

    // Kubernetes' TestEverything, TestSetIsEmpty.
    #[test]
    fn everything_is_empty_and_matches() {
        assert!(Selector::everything().matches(&labels(&[("x", "y")])));
        assert!(Selector::everything().is_empty());
        assert!(!Selector::nothing().is_empty());
        assert!(Selector::nothing().is_nothing());
        assert!(!Selector::nothing().matches(&labels(&[])));
        assert_eq!(Selector::nothing().to_string(), "");
        assert!(Selector::nothing().requirements().is_empty());
        assert_eq!(Selector::default(), Selector::everything());
    }

    // Kubernetes' TestSelectorMatches.
    #[test]
    fn matches_like_kubernetes() {
        let cases: &[MatchCase<'_>] = &[
            ("", &[("x", "y")], true),
            ("x=y", &[("x", "y")], true),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("notin=in", &[("notin", "in")], true),
            ("x", &[("x", "z")], true),
            ("!x", &[("y", "z")], true),
            ("x>1", &[("x", "2")], true),
            ("x<1", &[("x", "0")], true),
            ("x=z", &[], false),
            ("x=y", &[("x", "z")], false),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x", &[("y", "z")], false),
            ("!x", &[("x", "z")], false),
            ("x>1", &[("x", "0")], false),
            ("x<1", &[("x", "2")], false),
            ("foo=bar", &[("foo", "bar"), ("baz", "blah")], true),
            ("baz=blah", &[("foo", "bar"), ("baz", "blah")], true),
            ("foo=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")], true),
            ("foo=blah", &[("foo", "bar"), ("baz", "blah")], false),
            ("baz=bar", &[("foo", "bar"), ("baz", "blah")], false),
            (
                "foo=bar,foobar=bar,baz=blah",
                &[("foo", "bar"), ("baz", "blah")],
                false,
            ),
        ];
        for &(input, set, expected) in cases {
            assert_eq!(
                parse(input).matches(&labels(set)),
                expected,
                "{input:?} {set:?}"
            );
        }
    }

    // Kubernetes' TestSetMatches, TestNilMapIsValid, TestValidatedSelectorFromSet.
    #[test]
    fn selects_from_maps() {
        let set = labels(&[("foo", "bar"), ("baz", "blah")]);
        for selector in [
            labels(&[]),
            labels(&[("foo", "bar")]),
            labels(&[("baz", "blah")]),
            labels(&[("foo", "bar"), ("baz", "blah")]),
        ] {
            assert_eq!(
                Selector::from_map(&selector),
                Ok(Selector::from_validated_map(&selector))
            );
            assert!(
                Selector::from_validated_map(&selector).matches(&set),
                "{selector:?}"
            );
        }
        assert!(Selector::from_map(&labels(&[])).is_ok_and(|s| s.is_empty()));
        assert_eq!(
            Selector::from_map(&labels(&[("foo", "bar"), ("baz", "blah")])).map(|s| s.to_string()),
            Ok("baz=blah,foo=bar".to_owned())
        );
        let long = "axahm2EJ8Phiephe2eixohbee9eGeiyees1thuozi1xoh0GiuH3diewi8iem7Nui";
        let error = Selector::from_map(&labels(&[("Key", long)])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "invalid label value: \"{long}\": at key: \"Key\": must be no more than 63 characters"
            )
        );
        // Unvalidated maps still match, as Kubernetes' SelectorFromValidatedSet does.
        assert!(!Selector::from_validated_map(&labels(&[("foo", "=blah")])).matches(&set));
    }

    // Kubernetes' TestRequirementConstructor.
    #[test]
    fn constructs_requirements_like_kubernetes() {
        let long_key = "a".repeat(254);
        let cases: &[(&str, Operator, &[&str], bool)] = &[
            ("x", Operator::In, &[], false),
            ("x", Operator::NotIn, &[], false),
            ("x", Operator::In, &["foo"], true),
            ("x", Operator::NotIn, &["foo"], true),
            ("x", Operator::Exists, &[], true),
            ("x", Operator::DoesNotExist, &[], true),
            ("1foo", Operator::In, &["bar"], true),
            ("1234", Operator::In, &["bar"], true),
            ("y", Operator::GreaterThan, &["1"], true),
            ("z", Operator::LessThan, &["6"], true),
            ("foo", Operator::GreaterThan, &["bar"], false),
            ("barz", Operator::LessThan, &["blah"], false),
            (&long_key, Operator::Exists, &[], false),
            ("x", Operator::Exists, &["a"], false),
            ("x", Operator::Equals, &["a", "b"], false),
            ("x", Operator::Equals, &["a", "a"], false),
            ("x", Operator::NotEquals, &[], false),
            ("x", Operator::GreaterThan, &["1", "2"], false),
            ("x", Operator::GreaterThan, &["-1"], false),
        ];
        for &(key, operator, values, ok) in cases {
            let result = Requirement::new(key, operator, values.iter().copied());
            assert_eq!(
                result.is_ok(),
                ok,
                "{key} {operator} {values:?}: {result:?}"
            );
        }
    }

    #[test]
    fn requirement_errors_name_key_value_and_reason() {
        let error = Requirement::exists("a b").unwrap_err();
        assert!(matches!(&error, RequirementError::InvalidKey { key, .. } if key == "a b"));
        assert!(
            error
                .to_string()
                .starts_with("invalid label key \"a b\": name part must consist of")
        );
        let error = Requirement::in_set("x", Vec::<String>::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key \"x\": for 'in', 'notin' operators, values set can't be empty"
        );
        let error = Requirement::new("x", Operator::Equals, ["a", "b"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key \"x\": operator '=' requires exactly one value, found 2"
        );
        let error = Requirement::new("x", Operator::Exists, ["a"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key \"x\": values set must be empty for exists and does not exist"
        );
        let error = Requirement::new("x", Operator::LessThan, ["a"]).unwrap_err();
        assert_eq!(
            error,
            RequirementError::NotAnInteger {
                key: "x".into(),
                value: "a".into()
            }
        );
    }

    // Kubernetes' TestToString.
    #[test]
    fn prints_like_kubernetes() {
        let cases = [
            (
                vec![
                    requirement("x", Operator::In, &["abc", "def"]),
                    requirement("y", Operator::NotIn, &["jkl"]),
                    requirement("z", Operator::Exists, &[]),
                ],
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                vec![
                    requirement("x", Operator::NotIn, &["abc", "def"]),
                    requirement("y", Operator::NotEquals, &["jkl"]),
                    requirement("z", Operator::DoesNotExist, &[]),
                ],
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                vec![
                    requirement("x", Operator::NotIn, &["abc"]),
                    requirement("y", Operator::In, &["jkl", "mno"]),
                    requirement("z", Operator::NotIn, &[""]),
                ],
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                vec![
                    requirement("x", Operator::Equals, &["abc"]),
                    requirement("y", Operator::DoubleEquals, &["jkl"]),
                    requirement("z", Operator::NotEquals, &["a"]),
                    requirement("z", Operator::Exists, &[]),
                ],
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                vec![
                    requirement("x", Operator::GreaterThan, &["2"]),
                    requirement("y", Operator::LessThan, &["8"]),
                    requirement("z", Operator::Exists, &[]),
                ],
                "x>2,y<8,z",
            ),
        ];
        for (requirements, expected) in cases {
            let selector = Selector::new(requirements);
            assert_eq!(selector.to_string(), expected);
            assert_eq!(parse(expected), selector, "{expected:?}");
        }
    }

    // Kubernetes' TestRequirementSelectorMatching.
    #[test]
    fn matches_requirements_like_kubernetes() {
        let cases = [
            (
                labels(&[("x", "foo"), ("y", "baz")]),
                vec![
                    requirement("x", Operator::In, &["foo"]),
                    requirement("y", Operator::NotIn, &["alpha"]),
                ],
                true,
            ),
            (
                labels(&[("x", "foo"), ("y", "baz")]),
                vec![
                    requirement("x", Operator::In, &["foo"]),
                    requirement("y", Operator::In, &["alpha"]),
                ],
                false,
            ),
            (
                labels(&[("y", "")]),
                vec![
                    requirement("x", Operator::NotIn, &[""]),
                    requirement("y", Operator::Exists, &[]),
                ],
                true,
            ),
            (
                labels(&[("y", "")]),
                vec![
                    requirement("x", Operator::DoesNotExist, &[]),
                    requirement("y", Operator::Exists, &[]),
                ],
                true,
            ),
            (
                labels(&[("y", "")]),
                vec![
                    requirement("x", Operator::NotIn, &[""]),
                    requirement("y", Operator::DoesNotExist, &[]),
                ],
                false,
            ),
            (
                labels(&[("y", "baz")]),
                vec![requirement("x", Operator::In, &[""])],
                false,
            ),
            (
                labels(&[("z", "2")]),
                vec![requirement("z", Operator::GreaterThan, &["1"])],
                true,
            ),
            (
                labels(&[("z", "v2")]),
                vec![requirement("z", Operator::GreaterThan, &["1"])],
                false,
            ),
        ];
        for (set, requirements, expected) in cases {
            let selector = Selector::new(requirements);
            assert_eq!(selector.matches(&set), expected, "{selector} {set:?}");
        }
    }

    // Kubernetes' TestSetSelectorParser.
    #[test]
    fn parses_set_based_selectors_like_kubernetes() {
        use Operator::*;
        let cases: &[ParseCase<'_>] = &[
            ("", &[]),
            ("\rx", &[("x", Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                &[("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                &[(
                    "this-is-another-dns.domain.com/key-with-dash",
                    In,
                    &["so", "what"],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                &[(
                    "0.1.2.domain/99",
                    NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )],
            ),
            ("foo  in\t (abc)", &[("foo", In, &["abc"])]),
            ("x notin\n (abc)", &[("x", NotIn, &["abc"])]),
            ("x  notin\t\t\t(abc,def)", &[("x", NotIn, &["abc", "def"])]),
            ("x in (abc,def)", &[("x", In, &["abc", "def"])]),
            ("x in (abc,)", &[("x", In, &["abc", ""])]),
            ("x in ()", &[("x", In, &[""])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                &[
                    ("bar", Exists, &[]),
                    ("w", Exists, &[]),
                    ("x", NotIn, &["abc", "", "def"]),
                    ("z", In, &[""]),
                ],
            ),
            ("x,y in (a)", &[("x", Exists, &[]), ("y", In, &["a"])]),
            ("x=a", &[("x", Equals, &["a"])]),
            ("x>1", &[("x", GreaterThan, &["1"])]),
            ("x<7", &[("x", LessThan, &["7"])]),
            (
                "x=a,y!=b",
                &[("x", Equals, &["a"]), ("y", NotEquals, &["b"])],
            ),
            (
                "x=a,y!=b,z in (h,i,j)",
                &[
                    ("x", Equals, &["a"]),
                    ("y", NotEquals, &["b"]),
                    ("z", In, &["h", "i", "j"]),
                ],
            ),
            ("x notin ( )", &[("x", NotIn, &[""])]),
            ("x notin (, a)", &[("x", NotIn, &["", "a"])]),
            ("a ", &[("a", Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                &[("a", In, &["in", "notin", "x", "y", "z"])],
            ),
            ("in in (in)", &[("in", In, &["in"])]),
            ("notin", &[("notin", Exists, &[])]),
            ("!in", &[("in", DoesNotExist, &[])]),
            // Kubernetes' identifier list takes `,,` as one empty value, so an odd run of commas
            // before `)` is fine and an even one is not (see the bad strings).
            ("x in (,,,)", &[("x", In, &[""])]),
            ("x in (a,,b)", &[("x", In, &["", "a", "b"])]),
            ("x==in", &[("x", DoubleEquals, &["in"])]),
        ];
        for &(input, expected) in cases {
            let expected = Selector::new(
                expected
                    .iter()
                    .map(|&(key, operator, values)| requirement(key, operator, values)),
            );
            assert_eq!(parse(input), expected, "{input:?}");
        }
        let bad = [
            "x=a||y=b",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
            "x in (a",
            "x in a",
            "x in (a))",
            "!",
            "!!x",
            "x>=1",
            "x>99999999999999999999",
            "x=a b",
            "x in (a,=)",
            "x in (=)",
            "x=(",
            "x\0",
            "x in (,,)",
            "x in (a,,)",
        ];
        for input in bad {
            assert!(Selector::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn reports_errors_with_positions_and_kubernetes_words() {
        let cases = [
            ("x,,y", 2, "found ',', expected: identifier after ','"),
            (
                ",x",
                0,
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "x nott in (y)",
                2,
                "found 'nott', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("a in (xyz abc)", 10, "found 'abc', expected: ',' or ')'"),
            (
                "a notin(",
                8,
                "found 'end of string', expected: ',', ')' or identifier",
            ),
            (
                "a in (b,",
                8,
                "found 'end of string', expected: ',', or identifier",
            ),
            ("a in x", 5, "found 'x', expected: '('"),
            ("a in (=)", 6, "found '=', expected: ',', ')' or identifier"),
            (
                "a in (xyz)b",
                10,
                "found 'b', expected: ',' or 'end of string'",
            ),
            ("!x=a", 2, "found '=', expected: ',' or 'end of string'"),
            ("!", 1, "found 'end of string', expected: identifier"),
            ("x=(", 2, "found '(', expected: identifier"),
        ];
        for (input, position, message) in cases {
            let error = Selector::parse(input).unwrap_err();
            assert_eq!(error.position(), position, "{input:?}: {error}");
            assert_eq!(
                error.to_string(),
                format!("unable to parse label selector at byte {position}: {message}"),
                "{input:?}"
            );
        }

        let error = Selector::parse("app=web,Bad/Key=x").unwrap_err();
        assert_eq!(error.position(), 8);
        assert!(matches!(
            &error,
            ParseSelectorError::InvalidRequirement { error: RequirementError::InvalidKey { key, .. }, .. }
                if key == "Bad/Key"
        ));
        let error = Selector::parse("app in (web, -api)").unwrap_err();
        assert_eq!(error.position(), 13);
        assert_eq!(
            error.to_string(),
            "unable to parse label selector at byte 13: invalid label value: \"-api\": at key: \"app\": \
             a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
             regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        let error = Selector::parse("x<a").unwrap_err();
        assert!(matches!(
            error,
            ParseSelectorError::InvalidRequirement {
                position: 2,
                error: RequirementError::NotAnInteger { .. }
            }
        ));
        let error = Selector::parse("x>").unwrap_err();
        assert!(matches!(
            error,
            ParseSelectorError::InvalidRequirement {
                position: 2,
                error: RequirementError::NotAnInteger { .. }
            }
        ));
    }

    // Kubernetes' TestAdd.
    #[test]
    fn adds_requirements_in_key_order() {
        let selector = Selector::everything().and(requirement("key", Operator::In, &["value"]));
        assert_eq!(selector.to_string(), "key in (value)");
        let selector = selector.and(requirement("key2", Operator::Equals, &["value2"]));
        assert_eq!(selector.to_string(), "key in (value),key2=value2");
        let selector = selector.and(requirement("a", Operator::Exists, &[]));
        assert_eq!(selector.to_string(), "a,key in (value),key2=value2");
        let selector = selector.and(requirement("key", Operator::Exists, &[]));
        assert_eq!(selector.to_string(), "a,key in (value),key,key2=value2");
        assert!(
            Selector::nothing()
                .and(requirement("a", Operator::Exists, &[]))
                .is_nothing()
        );
    }

    // Kubernetes' TestRequiresExactMatch.
    #[test]
    fn requires_exact_matches_like_kubernetes() {
        let cases = [
            ("key in (value)", "key", Some("value")),
            ("key in (value,value2)", "key", None),
            (
                "key in (value,value1),key2 in (value2)",
                "key2",
                Some("value2"),
            ),
            ("key=value", "key", Some("value")),
            ("key==value", "key", Some("value")),
            ("key!=value", "key", None),
            ("key in (value),key2 in (value2)", "key", Some("value")),
            ("key", "key", None),
            ("other=x", "key", None),
        ];
        for (input, key, expected) in cases {
            assert_eq!(
                parse(input).requires_exact_match(key),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn matches_objects_by_their_labels() {
        use k8s_openapi::api::core::v1::Pod;
        let mut pod = Pod::default();
        assert!(parse("!app").matches_object(&pod));
        pod.labels_mut().insert("app".into(), "web".into());
        assert!(parse("app=web").matches_object(&pod));
        assert!(!parse("app=api").matches_object(&pod));
        let hashed: HashMap<String, String> = pod.labels().clone().into_iter().collect();
        assert!(parse("app in (web)").matches(&hashed));
    }

    #[test]
    fn compares_integers_like_kubernetes() {
        let cases = [
            ("x>1", "+2", true),
            ("x>1", "-2", false),
            ("x<1", "-2", true),
            ("x>1", " 2", false),
            ("x>1", "2.0", false),
            ("x>1", "99999999999999999999", false),
            ("x>9223372036854775806", "9223372036854775807", true),
            ("x<1", "", false),
            ("x>007", "8", true),
        ];
        for (input, value, expected) in cases {
            assert_eq!(
                parse(input).matches(&labels(&[("x", value)])),
                expected,
                "{input} {value:?}"
            );
        }
    }

    fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: values.map(|values| values.iter().map(|&v| v.to_owned()).collect()),
        }
    }

    // Kubernetes' TestLabelSelectorAsSelector (apimachinery/pkg/apis/meta/v1/helpers_test.go).
    #[test]
    fn converts_label_selectors_like_kubernetes() {
        assert_eq!(Selector::from_label_selector(None), Ok(Selector::nothing()));
        assert_eq!(
            Selector::from_label_selector(Some(&LabelSelector::default())),
            Ok(Selector::everything())
        );
        let full = LabelSelector {
            match_labels: Some([("foo".to_owned(), "bar".to_owned())].into()),
            match_expressions: Some(vec![
                expression("baz", "In", Some(&["qux", "norf"])),
                expression("zot", "DoesNotExist", None),
                expression("corge", "Exists", Some(&[])),
                expression("grault", "NotIn", Some(&["a"])),
            ]),
        };
        let selector = Selector::try_from(&full).map(|s| s.to_string());
        assert_eq!(
            selector,
            Ok("baz in (norf,qux),corge,foo=bar,grault notin (a),!zot".to_owned())
        );

        let bad_operator = LabelSelector {
            match_expressions: Some(vec![expression("baz", "Gt", Some(&["1"]))]),
            ..LabelSelector::default()
        };
        let error = Selector::from_label_selector(Some(&bad_operator)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        for bad in [
            expression("baz", "In", None),
            expression("baz", "NotIn", Some(&[])),
            expression("baz", "Exists", Some(&["x"])),
            expression("baz", "DoesNotExist", Some(&["x"])),
            expression("b@z", "Exists", None),
            expression("baz", "In", Some(&["-x"])),
        ] {
            let label_selector = LabelSelector {
                match_expressions: Some(vec![bad.clone()]),
                ..LabelSelector::default()
            };
            assert!(
                matches!(
                    Selector::try_from(label_selector),
                    Err(LabelSelectorError::Requirement(_))
                ),
                "{bad:?}"
            );
        }
        let bad_label = LabelSelector {
            match_labels: Some([("foo".to_owned(), "b a r".to_owned())].into()),
            ..LabelSelector::default()
        };
        assert!(Selector::from_label_selector(Some(&bad_label)).is_err());
    }

    #[test]
    fn converts_back_to_label_selectors() {
        let selector = parse("a=1,b!=2,c in (x,y),d notin (z),e,!f,g==3");
        let label_selector = LabelSelector::try_from(&selector).unwrap();
        assert_eq!(
            label_selector.match_labels,
            Some(BTreeMap::from([
                ("a".into(), "1".into()),
                ("g".into(), "3".into())
            ]))
        );
        assert_eq!(
            label_selector.match_expressions,
            Some(vec![
                expression("b", "NotIn", Some(&["2"])),
                expression("c", "In", Some(&["x", "y"])),
                expression("d", "NotIn", Some(&["z"])),
                expression("e", "Exists", None),
                expression("f", "DoesNotExist", None),
            ])
        );
        // Same meaning, not the same operators: `!=` became `notin`, `==` became `=`.
        let back = Selector::from_label_selector(Some(&label_selector)).unwrap();
        assert_eq!(
            back.to_string(),
            "a=1,b notin (2),c in (x,y),d notin (z),e,!f,g=3"
        );

        // Two values for one key keep their meaning (nothing matches both).
        let conflicting = parse("a=1,a=2").to_label_selector().unwrap().unwrap();
        assert_eq!(
            conflicting.match_expressions,
            Some(vec![expression("a", "In", Some(&["2"]))])
        );
        assert_eq!(
            Selector::try_from(&conflicting).unwrap().to_string(),
            "a=1,a in (2)"
        );

        assert_eq!(
            Selector::everything().to_label_selector(),
            Ok(Some(LabelSelector::default()))
        );
        assert_eq!(Selector::nothing().to_label_selector(), Ok(None));
        assert_eq!(
            LabelSelector::try_from(&Selector::nothing()),
            Err(LabelSelectorError::Nothing)
        );
        assert_eq!(
            parse("x>1").to_label_selector(),
            Err(LabelSelectorError::Unsupported {
                operator: Operator::GreaterThan
            })
        );
    }

    #[test]
    fn serializes_as_the_string_form() {
        let selector = parse("tier notin (b,a), app");
        let json = serde_json::to_string(&selector).unwrap();
        assert_eq!(json, r#""app,tier notin (a,b)""#);
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), selector);
        let error = serde_json::from_str::<Selector>(r#""a,,b""#).unwrap_err();
        assert!(
            error.to_string().contains("expected: identifier after ','"),
            "{error}"
        );
        assert!(serde_json::from_str::<Selector>("3").is_err());
    }

    #[test]
    fn operators_print_kubernetes_names() {
        let names: Vec<&str> = [
            Operator::Equals,
            Operator::DoubleEquals,
            Operator::NotEquals,
            Operator::In,
            Operator::NotIn,
            Operator::Exists,
            Operator::DoesNotExist,
            Operator::GreaterThan,
            Operator::LessThan,
        ]
        .into_iter()
        .map(Operator::as_str)
        .collect();
        assert_eq!(
            names,
            ["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]
        );
    }
}
