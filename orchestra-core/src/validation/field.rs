//! Field paths and field errors, as Kubernetes reports them.
//!
//! Every problem that defaulting, validation or strict decoding finds in an object is a field
//! [`Error`]: what is wrong ([`ErrorType`]), where ([`Path`], printed the way Kubernetes prints it:
//! `spec.template.spec.containers[0].ports[1].containerPort`, map keys in brackets as in
//! `metadata.labels[app]`), the offending value when there is one, and a detail message. An
//! [`ErrorList`] collects every problem of one object, so that a user sees all of them at once.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::validation::field::{Error, Path};
//!
//! let port = Path::new("spec").child("ports").index(1).child("port");
//! let error = Error::invalid(&port, 70000, "must be between 1 and 65535, inclusive");
//! assert_eq!(
//!     error.to_string(),
//!     "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
//! );
//! ```

use std::fmt;

use serde_json::Value;

/// One step of a [`Path`]: a field name, a list index or a map key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A field of an object, printed after a dot: `spec.replicas`.
    Field(String),
    /// An element of a list, printed in brackets: `containers[0]`.
    Index(usize),
    /// A key of a map, printed in brackets: `labels[app]`.
    Key(String),
}

/// Where in an object a problem is: a list of [`Segment`]s from the object's root.
///
/// Paths are cheap values built by extension (`child`, `index`, `key`), each returning a new path,
/// as Kubernetes' `field.Path` does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    segments: Vec<Segment>,
}

impl Path {
    /// The path of the object itself (prints as the empty string).
    pub fn root() -> Path {
        Path::default()
    }

    /// A path of one field from the root.
    pub fn new(field: &str) -> Path {
        Path::root().child(field)
    }

    /// This path extended by a field.
    #[must_use]
    pub fn child(&self, field: &str) -> Path {
        self.with(Segment::Field(field.to_owned()))
    }

    /// This path extended by a list index.
    #[must_use]
    pub fn index(&self, index: usize) -> Path {
        self.with(Segment::Index(index))
    }

    /// This path extended by a map key.
    #[must_use]
    pub fn key(&self, key: &str) -> Path {
        self.with(Segment::Key(key.to_owned()))
    }

    /// This path extended by any segment.
    #[must_use]
    pub fn with(&self, segment: Segment) -> Path {
        let mut segments = Vec::with_capacity(self.segments.len() + 1);
        segments.extend_from_slice(&self.segments);
        segments.push(segment);
        Path { segments }
    }

    /// The path `self` followed by every segment of `rest`.
    #[must_use]
    pub fn join(&self, rest: &Path) -> Path {
        let mut segments = self.segments.clone();
        segments.extend_from_slice(&rest.segments);
        Path { segments }
    }

    /// The segments, from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the object's own path.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }
}

impl From<Vec<Segment>> for Path {
    fn from(segments: Vec<Segment>) -> Path {
        Path { segments }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}

/// What kind of problem a field [`Error`] is; the same set as Kubernetes' `field.ErrorType`, plus
/// [`ErrorType::UnknownField`] for strict decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    /// A value that should exist (a reference to a volume, say) does not.
    NotFound,
    /// A required field is missing or empty.
    Required,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of a fixed set; the detail lists the supported ones.
    NotSupported,
    /// The field may not be set (in this context).
    Forbidden,
    /// A string or list is too long.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// Something went wrong that is not the user's fault.
    Internal,
    /// A value has the wrong type (a string where a number belongs, say).
    TypeInvalid,
    /// A field that the kind does not have (strict field validation).
    UnknownField,
}

impl ErrorType {
    /// The human phrase Kubernetes prints for this type (`"Invalid value"`).
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::TypeInvalid => "Invalid value",
            ErrorType::UnknownField => "Unknown field",
        }
    }

    /// The machine-readable cause type of a `Status` cause (`"FieldValueInvalid"`).
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::UnknownField => "FieldValueUnknown",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// One problem with one field of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// What kind of problem it is.
    pub kind: ErrorType,
    /// Where it is.
    pub field: Path,
    /// The offending value, when printing it helps.
    pub bad_value: Option<Value>,
    /// What is expected instead, or why the value is wrong.
    pub detail: String,
}

impl Error {
    fn build(kind: ErrorType, field: &Path, bad_value: Option<Value>, detail: &str) -> Error {
        Error {
            kind,
            field: field.clone(),
            bad_value,
            detail: detail.to_owned(),
        }
    }

    /// A required field is missing; `detail` may be empty.
    pub fn required(field: &Path, detail: &str) -> Error {
        Error::build(ErrorType::Required, field, None, detail)
    }

    /// A value is malformed or out of range.
    pub fn invalid(field: &Path, value: impl Into<Value>, detail: &str) -> Error {
        Error::build(ErrorType::Invalid, field, Some(value.into()), detail)
    }

    /// A value is not one of `supported`.
    pub fn not_supported<S: AsRef<str>>(
        field: &Path,
        value: impl Into<Value>,
        supported: &[S],
    ) -> Error {
        let quoted: Vec<String> = supported
            .iter()
            .map(|s| format!("{:?}", s.as_ref()))
            .collect();
        let detail = format!("supported values: {}", quoted.join(", "));
        Error::build(ErrorType::NotSupported, field, Some(value.into()), &detail)
    }

    /// A value that must be unique is repeated.
    pub fn duplicate(field: &Path, value: impl Into<Value>) -> Error {
        Error::build(ErrorType::Duplicate, field, Some(value.into()), "")
    }

    /// A referenced thing does not exist.
    pub fn not_found(field: &Path, value: impl Into<Value>) -> Error {
        Error::build(ErrorType::NotFound, field, Some(value.into()), "")
    }

    /// The field may not be set here.
    pub fn forbidden(field: &Path, detail: &str) -> Error {
        Error::build(ErrorType::Forbidden, field, None, detail)
    }

    /// A string or list is longer than `max` (bytes or items).
    pub fn too_long(field: &Path, max: usize) -> Error {
        let detail = format!("may not be more than {max} bytes");
        Error::build(ErrorType::TooLong, field, None, &detail)
    }

    /// A list has `actual` items where at most `max` are allowed.
    pub fn too_many(field: &Path, actual: usize, max: usize) -> Error {
        let detail = format!("must have at most {max} items");
        Error::build(ErrorType::TooMany, field, Some(actual.into()), &detail)
    }

    /// A value has the wrong type.
    pub fn type_invalid(field: &Path, detail: &str) -> Error {
        Error::build(ErrorType::TypeInvalid, field, None, detail)
    }

    /// A field the kind does not have.
    pub fn unknown_field(field: &Path) -> Error {
        let detail = format!("unknown field {:?}", field.to_string());
        Error::build(ErrorType::UnknownField, field, None, &detail)
    }

    /// Something went wrong that is not the user's fault.
    pub fn internal(field: &Path, detail: &str) -> Error {
        Error::build(ErrorType::Internal, field, None, detail)
    }

    /// This error moved under `prefix` (for an object nested in another: a `List`'s items).
    #[must_use]
    pub fn under(mut self, prefix: &Path) -> Error {
        self.field = prefix.join(&self.field);
        self
    }

    /// The message without the field path, as Kubernetes' `ErrorBody`:
    /// `Invalid value: -1: must be greater than or equal to 0`.
    pub fn body(&self) -> String {
        let mut body = self.kind.phrase().to_owned();
        let show_value = !matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if show_value && let Some(value) = &self.bad_value {
            body.push_str(": ");
            body.push_str(&value.to_string());
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_root() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

impl std::error::Error for Error {}

/// Every problem found in one object, in the order they were found.
pub type ErrorList = Vec<Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_kubernetes() {
        let path = Path::new("spec")
            .child("template")
            .child("spec")
            .child("containers")
            .index(0)
            .child("ports")
            .index(1)
            .child("containerPort");
        assert_eq!(
            path.to_string(),
            "spec.template.spec.containers[0].ports[1].containerPort"
        );
        assert_eq!(
            Path::new("metadata").child("labels").key("app").to_string(),
            "metadata.labels[app]"
        );
        assert_eq!(Path::root().to_string(), "");
    }

    #[test]
    fn bodies_print_like_kubernetes() {
        let path = Path::new("spec").child("restartPolicy");
        assert_eq!(
            Error::not_supported(&path, "Sometimes", &["Always", "OnFailure", "Never"]).body(),
            r#"Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
        );
        assert_eq!(
            Error::required(
                &Path::new("metadata").child("name"),
                "name or generateName is required"
            )
            .to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert_eq!(
            Error::duplicate(&path, "http").body(),
            r#"Duplicate value: "http""#
        );
        assert_eq!(
            Error::too_long(&path, 63).body(),
            "Too long: may not be more than 63 bytes"
        );
    }
}
