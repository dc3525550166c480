//! Defaulting: the values Kubernetes fills in for fields a manifest leaves out.
//!
//! [`SetDefaults`] is implemented for every built-in kind with Kubernetes' defaults (for example
//! `restartPolicy: Always`, `terminationGracePeriodSeconds: 30`, a Deployment's `RollingUpdate`
//! strategy with 25% / 25%, `revisionHistoryLimit: 10`, `progressDeadlineSeconds: 600`, a port's
//! `protocol: TCP`, a Service's `type: ClusterIP`). Defaulting never fails and never overwrites a
//! value that is set; values it cannot interpret are left for validation to report.

/// An object that can fill in Kubernetes' defaults for the fields it leaves out.
pub trait SetDefaults {
    /// Fills in every default; values already set are kept.
    fn set_defaults(&mut self);
}
