//! Kubernetes version strings as the three distributions spell them.
//!
//! `v1.27.4+k3s1`, `v1.28.3+rke2r1`, `v1.30.2`, `1.31.0`: an optional `v`, `MAJOR.MINOR`, an
//! optional `.PATCH` and pre-release (`-rc1`), an optional `+build` suffix. Only `MAJOR.MINOR`
//! matter to rendering (the kubeadm API version); the suffix is checked against the
//! distribution so a k3s version in an RKE2 site is caught before a host installs it.

use crate::{Distribution, RenderError};

/// The oldest Kubernetes minor version muster renders for, for every distribution (1.24).
pub const MIN_MINOR: u32 = 24;

/// A parsed version: what rendering needs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    /// The major version (1).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl KubeVersion {
    /// Parses `version`, checking a build suffix against `distribution`.
    pub fn parse(version: &str, distribution: Distribution) -> Result<Self, RenderError> {
        let bad = |reason| RenderError::BadVersion {
            version: version.to_owned(),
            reason,
        };
        let rest = version.strip_prefix('v').unwrap_or(version);
        let (core, build) = match rest.split_once('+') {
            Some((core, build)) => (core, Some(build)),
            None => (rest, None),
        };
        let core = core.split_once('-').map_or(core, |(c, _pre)| c);
        let mut parts = core.split('.');
        let number = |part: Option<&str>| -> Result<u32, RenderError> {
            let part = part.ok_or_else(|| bad("expected MAJOR.MINOR[.PATCH]"))?;
            if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("MAJOR, MINOR and PATCH must be decimal numbers"));
            }
            part.parse().map_err(|_| bad("number out of range"))
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        if let Some(patch) = parts.next() {
            number(Some(patch))?;
        }
        if parts.next().is_some() {
            return Err(bad("too many dot-separated parts"));
        }
        if major != 1 {
            return Err(bad("only Kubernetes 1.x exists"));
        }
        if let Some(build) = build {
            check_suffix(version, build, distribution)?;
        }
        if minor < MIN_MINOR {
            return Err(RenderError::VersionTooOld {
                version: version.to_owned(),
                minimum: "1.24",
                distribution,
            });
        }
        Ok(KubeVersion { major, minor })
    }

    /// Whether this is `major.minor` or newer.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// Refuses a `+k3sN` suffix outside k3s and a `+rke2rN` suffix outside RKE2.
fn check_suffix(version: &str, build: &str, distribution: Distribution) -> Result<(), RenderError> {
    let suffix_of = if build.starts_with("rke2") {
        Distribution::Rke2
    } else if build.starts_with("k3s") {
        Distribution::K3s
    } else {
        return Ok(());
    };
    if suffix_of == distribution || distribution == Distribution::None {
        return Ok(());
    }
    Err(RenderError::VersionOfOtherDistribution {
        version: version.to_owned(),
        suffix_of,
        distribution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str, d: Distribution) -> Result<KubeVersion, RenderError> {
        KubeVersion::parse(s, d)
    }

    #[test]
    fn the_distributions_spellings_parse() {
        let k = |major, minor| KubeVersion { major, minor };
        assert_eq!(v("v1.27.4+k3s1", Distribution::K3s), Ok(k(1, 27)));
        assert_eq!(v("v1.28.3+rke2r1", Distribution::Rke2), Ok(k(1, 28)));
        assert_eq!(v("v1.30.2", Distribution::Kubeadm), Ok(k(1, 30)));
        assert_eq!(v("1.31", Distribution::Kubeadm), Ok(k(1, 31)));
        assert_eq!(v("v1.32.0-rc.1", Distribution::Kubeadm), Ok(k(1, 32)));
    }

    #[test]
    fn malformed_versions_are_named() {
        for bad in [
            "",
            "v",
            "latest",
            "v1",
            "v1.x",
            "v1.30.2.1",
            "v2.0.0",
            "v1.-3",
            "v1.99999",
        ] {
            let err = v(bad, Distribution::Kubeadm).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn another_distributions_suffix_is_refused() {
        let err = v("v1.28.3+rke2r1", Distribution::K3s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubernetes version \"v1.28.3+rke2r1\" is a rke2 release, not a k3s one"
        );
        assert!(v("v1.27.4+k3s1", Distribution::Kubeadm).is_err());
    }
}
