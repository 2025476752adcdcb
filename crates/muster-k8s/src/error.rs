//! `RenderError`: what can be wrong with a [`crate::RenderInput`], one variant per cause.
//!
//! Variants name the field, key or secret that is wrong and why, never a secret's value: a
//! render error is logged by the agent and shown in `muster status`.

use crate::Distribution;

/// Why a configuration could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A distribution name that is not `k3s`, `rke2`, `kubeadm` or `none`.
    #[error("unknown distribution {0:?} (expected one of: k3s, rke2, kubeadm, none)")]
    UnknownDistribution(String),
    /// The version string is not `vMAJOR.MINOR[.PATCH][+SUFFIX]`.
    #[error("kubernetes version {version:?} is not understood: {reason}")]
    BadVersion {
        /// The version as given.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The version is older than this crate renders for the distribution.
    #[error("kubernetes version {version:?} is older than {minimum}, the oldest {distribution} version muster renders for")]
    VersionTooOld {
        /// The version as given.
        version: String,
        /// The oldest version accepted, `MAJOR.MINOR`.
        minimum: &'static str,
        /// The distribution.
        distribution: Distribution,
    },
    /// A version whose build suffix names another distribution (`+rke2r1` for k3s, …).
    #[error("kubernetes version {version:?} is a {suffix_of} release, not a {distribution} one")]
    VersionOfOtherDistribution {
        /// The version as given.
        version: String,
        /// The distribution the suffix belongs to.
        suffix_of: Distribution,
        /// The distribution being rendered.
        distribution: Distribution,
    },
    /// A secret the distribution needs for this role is not in `secrets`.
    #[error("secret {name} is missing (needed by {distribution} for this role)")]
    MissingSecret {
        /// The secret's key, e.g. `TOKEN`.
        name: &'static str,
        /// The distribution.
        distribution: Distribution,
    },
    /// A secret that is present but malformed (the value itself is never shown).
    #[error("secret {name} is malformed: {reason}")]
    BadSecret {
        /// The secret's key.
        name: &'static str,
        /// The expected shape.
        reason: &'static str,
    },
    /// The endpoint is empty or not a host name or address.
    #[error("API endpoint {endpoint:?} is not a host name or address: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The node name is empty or not a DNS label-ish name Kubernetes accepts.
    #[error("node name {0:?} is not a valid Kubernetes node name (lower-case RFC 1123 subdomain)")]
    BadNodeName(String),
    /// A CIDR field is not `address/prefix` (comma-separated for dual stack).
    #[error("{field} {value:?} is not a CIDR (address/prefix, comma-separated for dual stack)")]
    BadCidr {
        /// `cluster_cidr` or `service_cidr`.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A CA file path that is relative or contains `:` (the `MUSTER_CA_FILES` separator).
    #[error("CA file {0:?} must be an absolute path without ':'")]
    BadCaFile(String),
    /// An operator override of a key muster owns for cluster formation.
    #[error("extra key {key:?} is set by muster and cannot be overridden")]
    ExtraReserved {
        /// The key (a dotted path for kubeadm).
        key: String,
    },
    /// An operator override whose type does not fit the rendered key.
    #[error("extra key {key:?} must be {expected}")]
    ExtraType {
        /// The key (a dotted path for kubeadm).
        key: String,
        /// The expected type.
        expected: &'static str,
    },
    /// A kubeadm override for a document kind muster does not render.
    #[error("extra key {0:?} is not a kubeadm document kind (InitConfiguration, ClusterConfiguration, JoinConfiguration, KubeletConfiguration, KubeProxyConfiguration)")]
    ExtraUnknownKind(String),
}
