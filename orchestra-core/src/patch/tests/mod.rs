//! Tests of the patch formats: the examples of RFC 6902 and RFC 7386, Kubernetes' own strategic
//! merge patch cases, and property tests.

mod json_patch;
mod limits;
mod merge_patch;
mod patch_type;
mod properties;
mod strategic_merge;
