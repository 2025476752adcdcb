//! The deployment files, checked with the tools that read them: `deploy/muster.service` with
//! `systemd-analyze verify` (a typo in a key is a warning there, so a clean run is required) and
//! `systemd-analyze security --offline` (exposure below [`EXPOSURE_MAX`], and only the exposures
//! listed in [`ACCEPTED_EXPOSURES`]); `deploy/kairos-cloud-config.yaml` parsed as YAML and
//! checked against the keys Kairos documents for its stages (yip's schema), with the config it
//! writes run through `muster check-config` and the key template matched against `muster keygen`.
//!
//! Needs the muster binary (`$MUSTER_BIN` or the target dir) and systemd-analyze
//! (`scripts/lib.sh` installs Debian's `systemd`; the offline modes need no running systemd).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use muster_testbed::cli::{workspace_root, Muster};
use yaml_rust2::{Yaml, YamlLoader};

/// Highest acceptable `systemd-analyze security` exposure (0 = locked down, 10 = unprotected;
/// systemd calls below 3 "OK"). The unit scores 2.1: what is left is root (the install hooks
/// install Kubernetes as root), the host network, netlink and packet sockets, CAP_NET_ADMIN and
/// CAP_NET_RAW (the VIP), full /proc (kubeadm's preflight reads it) and no IP allow list (the
/// site's addresses are not known in advance). Each of those is in [`ACCEPTED_EXPOSURES`].
const EXPOSURE_MAX: f64 = 2.5;

/// The settings `systemd-analyze security` may mark ✗, each accepted for the reason above.
const ACCEPTED_EXPOSURES: &[&str] = &[
    "RootDirectory=/RootImage=",
    "User=/DynamicUser=",
    "PrivateNetwork=",
    "PrivateUsers=",
    "RestrictAddressFamilies=~AF_PACKET",
    "RestrictAddressFamilies=~AF_NETLINK",
    "RestrictAddressFamilies=~AF_UNIX",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "CapabilityBoundingSet=~CAP_NET_ADMIN",
    "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)",
    "ProcSubset=",
    "IPAddressDeny=",
    // ProtectClock= leaves read access to the RTC.
    "DeviceAllow=",
];

fn deploy_file(name: &str) -> PathBuf {
    workspace_root().join("deploy").join(name)
}

/// Whether systemd-analyze runs here; if not, the test says why it is skipped.
fn systemd_analyze_present() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (Debian package `systemd`; scripts/lib.sh \
             installs it)"
        );
    }
    ok
}

/// The shipped unit with `ExecStart` pointing at the built binary (verify checks it exists).
fn unit_for(bin: &Path) -> Result<String> {
    let unit = std::fs::read_to_string(deploy_file("muster.service"))?;
    let exec = "ExecStart=/usr/bin/muster agent ";
    if !unit.contains(exec) {
        bail!("deploy/muster.service has no `{exec}...` line");
    }
    Ok(unit.replace(exec, &format!("ExecStart={} agent ", bin.display())))
}

/// `systemd-analyze verify UNIT`: (success, stderr). Man pages come from `muster man`.
fn verify(dir: &Path, unit_text: &str, muster: &Muster) -> Result<(bool, String)> {
    let unit = dir.join("muster.service");
    std::fs::write(&unit, unit_text)?;
    let man_dir = dir.join("man");
    let man1 = man_dir.join("man1");
    std::fs::create_dir_all(&man1)?;
    muster.run(&["man", "--out-dir", &man1.to_string_lossy()])?;
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").env("MANPATH", &man_dir);
    if Command::new("man").arg("--version").output().is_err() {
        cmd.arg("--man=no");
    }
    let out = cmd.arg(&unit).output().context("running systemd-analyze")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn unit_verifies_and_its_exposure_stays_below_the_threshold() -> Result<()> {
    if !systemd_analyze_present() {
        return Ok(());
    }
    let muster = Muster::locate()?;
    let dir = tempfile::tempdir()?;
    let unit = unit_for(muster.path())?;
    for needed in [
        "Type=notify\n",
        "WatchdogSec=",
        "Restart=on-failure\n",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n",
        "NoNewPrivileges=yes\n",
        "SystemCallFilter=@system-service\n",
        "ProtectSystem=strict\n",
        "ReadWritePaths=/var/lib/muster /run/muster\n",
    ] {
        assert!(
            unit.contains(needed),
            "deploy/muster.service lacks {needed:?}"
        );
    }
    let (ok, stderr) = verify(dir.path(), &unit, &muster)?;
    assert!(ok && stderr.trim().is_empty(), "verify: {stderr}");
    // The check can fail: a misspelt value is reported.
    let typo = unit.replace("ProtectSystem=strict", "ProtectSystem=strictly");
    let (ok, stderr) = verify(dir.path(), &typo, &muster)?;
    assert!(!ok || !stderr.trim().is_empty(), "a typo passed verify");

    std::fs::write(dir.path().join("muster.service"), &unit)?;
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(dir.path().join("muster.service"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "security: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for muster.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no overall exposure level in:\n{text}"))?;
    eprintln!("systemd-analyze security: exposure {score} (threshold {EXPOSURE_MAX})");
    assert!(score < EXPOSURE_MAX, "exposure {score}:\n{text}");
    for line in text.lines().filter(|l| l.trim_start().starts_with('✗')) {
        let setting = line.trim_start_matches('✗').split_whitespace().next();
        assert!(
            setting.is_some_and(|s| ACCEPTED_EXPOSURES.contains(&s)),
            "an exposure not accepted in tests/tests/deploy.rs: {line}"
        );
    }
    Ok(())
}

/// Keys of one yip stage step (Kairos' "stage modules"; yip `pkg/schema/schema.go`, `Stage`).
const STEP_KEYS: &[&str] = &[
    "name",
    "if",
    "after",
    "commands",
    "files",
    "downloads",
    "directories",
    "ensure_entities",
    "delete_entities",
    "dns",
    "hostname",
    "sysctl",
    "authorized_keys",
    "node",
    "users",
    "modules",
    "systemctl",
    "environment",
    "environment_file",
    "packages",
    "unpack_images",
    "datasource",
    "layout",
    "systemd_firstboot",
    "timesyncd",
    "git",
    "only_os",
    "only_os_version",
    "only_arch",
    "only_service_manager",
];
/// `files` entries (yip `File`; yaml.v2 lowercases the field names).
const FILE_KEYS: &[&str] = &[
    "path",
    "permissions",
    "owner",
    "group",
    "content",
    "encoding",
    "ownerstring",
];
/// `directories` entries (yip `Directory`).
const DIRECTORY_KEYS: &[&str] = &["path", "permissions", "owner", "group"];
/// `systemctl` (yip `Systemctl`).
const SYSTEMCTL_KEYS: &[&str] = &["enable", "disable", "start", "mask", "overrides"];
/// Kairos boot and lifecycle stages (docs: architecture/cloud-init); each may carry
/// `.before` / `.after`.
const STAGES: &[&str] = &[
    "rootfs",
    "initramfs",
    "boot",
    "fs",
    "network",
    "reconcile",
    "before-install",
    "after-install",
    "after-install-chroot",
    "before-upgrade",
    "after-upgrade",
    "after-upgrade-chroot",
    "before-reset",
    "after-reset",
    "after-reset-chroot",
];

fn keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_keys(y: &Yaml, allowed: &[&str], what: &str) {
    assert!(y.as_hash().is_some(), "{what} is not a mapping: {y:?}");
    for k in keys(y) {
        assert!(allowed.contains(&k.as_str()), "{what}: unknown key {k:?}");
    }
}

fn strings(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn kairos_stanza_writes_config_and_key_and_enables_the_unit() -> Result<()> {
    let path = deploy_file("kairos-cloud-config.yaml");
    let text = std::fs::read_to_string(&path)?;
    assert!(
        text.starts_with("#cloud-config\n"),
        "Kairos needs the #cloud-config header"
    );
    let docs = YamlLoader::load_from_str(&text).context("deploy/kairos-cloud-config.yaml")?;
    assert_eq!(docs.len(), 1, "one YAML document");
    let doc = &docs[0];
    assert_keys(doc, &["install", "stages"], "top level");
    assert_keys(&doc["install"], &["bind_mounts"], "install");
    let stages = &doc["stages"];
    let mut files = Vec::new();
    let mut directories = Vec::new();
    let mut enabled = Vec::new();
    for stage in keys(stages) {
        let base = stage.trim_end_matches(".before").trim_end_matches(".after");
        assert!(STAGES.contains(&base), "unknown stage {stage:?}");
        let steps = stages[stage.as_str()]
            .as_vec()
            .context("a stage is a list of steps")?;
        for step in steps {
            assert_keys(step, STEP_KEYS, &format!("a step of {stage}"));
            for f in step["files"].as_vec().into_iter().flatten() {
                assert_keys(f, FILE_KEYS, "a files entry");
                files.push((stage.clone(), f));
            }
            for d in step["directories"].as_vec().into_iter().flatten() {
                assert_keys(d, DIRECTORY_KEYS, "a directories entry");
                directories.push(d);
            }
            if !step["systemctl"].is_badvalue() {
                assert_keys(&step["systemctl"], SYSTEMCTL_KEYS, "systemctl");
                enabled.extend(strings(&step["systemctl"]["enable"]));
            }
        }
    }
    let file = |p: &str| {
        files
            .iter()
            .find(|(_, f)| f["path"].as_str() == Some(p))
            .map(|(stage, f)| (stage.as_str(), *f))
            .with_context(|| format!("no files entry writes {p}"))
    };
    // YAML 1.2 (yaml-rust2) reads the literal 0600 as 600; yip's YAML 1.1 parser reads it as
    // octal. Either way the file must say 0600, 0644, 0700.
    let (stage, key) = file("/etc/muster/site.key")?;
    assert_eq!(key["permissions"].as_i64(), Some(600), "site key mode 0600");
    assert_eq!(key["owner"].as_i64(), Some(0));
    assert_eq!(
        stage, "initramfs",
        "/etc is rebuilt each boot: write before systemd starts"
    );
    let (_, config) = file("/etc/muster/muster.toml")?;
    assert_eq!(config["permissions"].as_i64(), Some(644));
    assert!(
        directories
            .iter()
            .any(|d| d["path"].as_str() == Some("/etc/muster")
                && d["permissions"].as_i64() == Some(700)),
        "/etc/muster made 0700"
    );
    assert_eq!(enabled, ["muster.service"]);

    // The config it writes is one muster accepts, naming the key file and a persistent data dir.
    let muster = Muster::locate()?;
    let dir = tempfile::tempdir()?;
    let toml_text = config["content"].as_str().context("config content")?;
    let toml_path = dir.path().join("muster.toml");
    std::fs::write(&toml_path, toml_text)?;
    muster.run(&["check-config", "--config", &toml_path.to_string_lossy()])?;
    let table: toml::Table = toml::from_str(toml_text)?;
    assert_eq!(
        table["site"]["key_file"].as_str(),
        Some("/etc/muster/site.key")
    );
    let data_dir = table["node"]["data_dir"]
        .as_str()
        .context("node.data_dir")?;
    assert!(
        strings(&doc["install"]["bind_mounts"]).contains(&data_dir),
        "{data_dir} is not bind-mounted from the persistent partition"
    );
    // The key template has the format `muster keygen` writes: the same header lines.
    let keygen = dir.path().join("site.key");
    muster.keygen(&keygen)?;
    let made = std::fs::read_to_string(&keygen)?;
    let template = key["content"].as_str().context("key content")?;
    let header = |s: &str| s.lines().take(2).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(header(template), header(&made));
    assert_eq!(template.lines().count(), made.lines().count());
    Ok(())
}
