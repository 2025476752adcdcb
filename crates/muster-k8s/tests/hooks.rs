//! The install hooks in `deploy/hooks/` run for real against a fake root (`MUSTER_HOOK_ROOT`),
//! with fake `systemctl`, `kubeadm`, `kubelet`, `kubectl` and install scripts that record their
//! arguments, and a PATH holding only those fakes and the host tools the hooks rely on (so a
//! missing binary is really missing). openssl is the real one, on a real test CA.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Host tools the hooks (and the fakes) use; each must exist on the test machine.
const TOOLS: &[&str] = &[
    "sh", "cat", "cp", "mv", "mkdir", "chmod", "rm", "grep", "sed", "mktemp", "cmp", "dirname",
    "basename", "tr", "cut", "sleep", "openssl", "touch", "ls", "env",
];

const TOKEN: &str = "K10hook-test-token::server:c0ffee";
const BOOTSTRAP: &str = "q7w3zx.k2m9p4r8t6v1y5b3";
const CERT_KEY: &str = "9f2c4e6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f";

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
echo "systemctl $*" >> "$MUSTER_TEST_LOG"
cmd=$1; shift
unit=
for a in "$@"; do case $a in -*) ;; *) unit=$a ;; esac; done
case $cmd in
    is-active) [ -f "$MUSTER_TEST_STATE/active-$unit" ] ;;
    start|restart) touch "$MUSTER_TEST_STATE/active-$unit" ;;
esac
"#;

const FAKE_KUBEADM: &str = r#"#!/bin/sh
echo "kubeadm $*" >> "$MUSTER_TEST_LOG"
k="$MUSTER_HOOK_ROOT/etc/kubernetes"
case "$1 $2" in
    "init --config")
        mkdir -p "$k/pki"
        cp "$MUSTER_TEST_CA" "$k/pki/ca.crt"
        touch "$k/admin.conf" "$MUSTER_TEST_STATE/api-up"
        echo "kubeadm join 10.0.0.100:6443 --token q7w3zx.k2m9p4r8t6v1y5b3 \\"
        echo "  --control-plane --certificate-key 9f2c4e6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f"
        ;;
    "join --config")
        touch "$k/kubelet.conf" 2>/dev/null || { mkdir -p "$k"; touch "$k/kubelet.conf"; }
        if [ "$MUSTER_ROLE" = control-plane ]; then
            mkdir -p "$k/manifests"
            touch "$k/manifests/kube-apiserver.yaml"
        fi
        ;;
esac
"#;

const FAKE_KUBECTL: &str = r#"#!/bin/sh
echo "kubectl $*" >> "$MUSTER_TEST_LOG"
[ -f "$MUSTER_TEST_STATE/api-up" ]
"#;

const FAKE_K3S_INSTALL: &str = r#"#!/bin/sh
echo "k3s-install.sh EXEC=$INSTALL_K3S_EXEC SKIP_DOWNLOAD=$INSTALL_K3S_SKIP_DOWNLOAD SKIP_START=${INSTALL_K3S_SKIP_START:-} HTTP_PROXY=${HTTP_PROXY:-}" >> "$MUSTER_TEST_LOG"
unit=k3s
[ "$INSTALL_K3S_EXEC" = agent ] && unit=k3s-agent
mkdir -p "$MUSTER_HOOK_ROOT/etc/systemd/system"
echo "[Unit]" > "$MUSTER_HOOK_ROOT/etc/systemd/system/$unit.service"
"#;

const FAKE_RKE2_INSTALL: &str = r#"#!/bin/sh
echo "rke2-install.sh ARTIFACT_PATH=$INSTALL_RKE2_ARTIFACT_PATH TYPE=$INSTALL_RKE2_TYPE" >> "$MUSTER_TEST_LOG"
mkdir -p "$MUSTER_HOOK_ROOT/usr/local/bin" "$MUSTER_HOOK_ROOT/usr/local/lib/systemd/system"
printf '#!/bin/sh\n' > "$MUSTER_HOOK_ROOT/usr/local/bin/rke2"
chmod 0755 "$MUSTER_HOOK_ROOT/usr/local/bin/rke2"
echo "[Unit]" > "$MUSTER_HOOK_ROOT/usr/local/lib/systemd/system/rke2-$INSTALL_RKE2_TYPE.service"
"#;

/// A fake host: root, PATH, the recording log, the rendered config.
struct Host {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    path: String,
    config: PathBuf,
    secrets_out: PathBuf,
    ca: PathBuf,
}

fn write_exe(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn which(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("host tool {tool} not found (Debian packages coreutils, diffutils, sed, grep, openssl)");
}

impl Host {
    /// A host with the given fakes on PATH (`systemctl` always).
    fn new(fakes: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_path_buf();
        let root = base.join("root");
        let (fakebin, toolbin) = (base.join("fakebin"), base.join("toolbin"));
        fs::create_dir_all(&toolbin).expect("mkdir");
        fs::create_dir_all(base.join("state")).expect("mkdir");
        fs::create_dir_all(&root).expect("mkdir");
        for tool in TOOLS {
            std::os::unix::fs::symlink(which(tool), toolbin.join(tool)).expect("symlink");
        }
        write_exe(&fakebin.join("systemctl"), FAKE_SYSTEMCTL);
        for (name, text) in fakes {
            write_exe(&fakebin.join(name), text);
        }
        let config = base.join("rendered.yaml");
        fs::write(
            &config,
            format!("token: \"{TOKEN}\"\nnode-name: \"edge-1\"\n"),
        )
        .expect("config");
        let ca = base.join("ca.crt");
        let path = format!("{}:{}", fakebin.display(), toolbin.display());
        Host {
            _dir: dir,
            secrets_out: base.join("secrets.out"),
            base,
            root,
            path,
            config,
            ca,
        }
    }

    fn run(&self, hook: &str, role: &str, env: &[(&str, &str)]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/hooks")
            .join(hook);
        let mut cmd = Command::new(script);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("MUSTER_HOOK_ROOT", &self.root)
            .env("MUSTER_ROLE", role)
            .env("MUSTER_DISTRIBUTION", hook)
            .env("MUSTER_CONFIG", &self.config)
            .env("MUSTER_SECRETS_OUT", &self.secrets_out)
            .env("MUSTER_NODE_IP", "10.0.0.11")
            .env("MUSTER_ENDPOINT", "10.0.0.100")
            .env("MUSTER_API_WAIT_S", "0")
            .env("MUSTER_TEST_LOG", self.base.join("calls.log"))
            .env("MUSTER_TEST_STATE", self.base.join("state"))
            .env("MUSTER_TEST_CA", &self.ca);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run hook");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in [TOKEN, BOOTSTRAP, CERT_KEY] {
            assert!(!all.contains(secret), "{hook} printed a secret:\n{all}");
        }
        out
    }

    /// The recorded calls, and forgets them.
    fn calls(&self) -> Vec<String> {
        let log = self.base.join("calls.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        text.lines().map(str::to_owned).collect()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn put_binary(&self, path: &str) {
        write_exe(&self.file(path), "#!/bin/sh\nexit 0\n");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "hook failed: {stderr}");
    stderr
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("installed file")
        .permissions()
        .mode()
        & 0o777
}

fn assert_config_installed(host: &Host, path: &str) {
    let installed = host.file(path);
    assert_eq!(
        fs::read(&installed).ok(),
        fs::read(&host.config).ok(),
        "{path}"
    );
    assert_eq!(mode(&installed), 0o600, "{path}");
}

#[test]
fn k3s_server_gets_its_config_0600_and_a_notify_unit_started() {
    let host = Host::new(&[]);
    host.put_binary("/usr/local/bin/k3s");
    ok(&host.run("k3s", "init", &[]));
    assert_config_installed(&host, "/etc/rancher/k3s/config.yaml");
    let unit = fs::read_to_string(host.file("/etc/systemd/system/k3s.service")).unwrap_or_default();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/k3s server\n") && unit.contains("Type=notify"),
        "{unit}"
    );
    assert_eq!(
        host.calls(),
        [
            "systemctl daemon-reload",
            "systemctl enable k3s",
            "systemctl restart --no-block k3s"
        ]
        .map(String::from)
    );
}

#[test]
fn k3s_worker_runs_the_agent_unit() {
    let host = Host::new(&[]);
    host.put_binary("/usr/local/bin/k3s");
    ok(&host.run("k3s", "worker", &[]));
    let unit =
        fs::read_to_string(host.file("/etc/systemd/system/k3s-agent.service")).unwrap_or_default();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/k3s agent\n") && unit.contains("Type=exec"),
        "{unit}"
    );
    assert!(host
        .calls()
        .contains(&"systemctl restart --no-block k3s-agent".to_owned()));
    assert!(!host.file("/etc/systemd/system/k3s.service").exists());
}

#[test]
fn k3s_rerun_is_idempotent_until_the_config_changes() {
    let host = Host::new(&[]);
    host.put_binary("/usr/local/bin/k3s");
    ok(&host.run("k3s", "control-plane", &[]));
    host.calls();
    let stderr = ok(&host.run("k3s", "control-plane", &[]));
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert_eq!(
        host.calls(),
        ["systemctl is-active --quiet k3s"].map(String::from)
    );
    fs::write(&host.config, "token: \"other\"\n").expect("config");
    ok(&host.run("k3s", "control-plane", &[]));
    assert!(host
        .calls()
        .contains(&"systemctl restart --no-block k3s".to_owned()));
    assert_config_installed(&host, "/etc/rancher/k3s/config.yaml");
}

#[test]
fn k3s_uses_the_install_script_without_download_and_writes_the_proxy_env() {
    let host = Host::new(&[]);
    host.put_binary("/usr/local/bin/k3s");
    write_exe(
        &host.file("/usr/local/share/muster/k3s-install.sh"),
        FAKE_K3S_INSTALL,
    );
    let proxy = [
        ("HTTP_PROXY", "http://proxy:3128"),
        ("NO_PROXY", "10.42.0.0/16,localhost"),
    ];
    ok(&host.run("k3s", "worker", &proxy));
    let calls = host.calls();
    assert_eq!(
        calls[0],
        "k3s-install.sh EXEC=agent SKIP_DOWNLOAD=true SKIP_START=true HTTP_PROXY=http://proxy:3128"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("systemctl restart --no-block k3s-agent")
    );
    let env_file = host.file("/etc/systemd/system/k3s-agent.service.env");
    assert_eq!(
        fs::read_to_string(&env_file).unwrap_or_default(),
        "HTTP_PROXY=\"http://proxy:3128\"\nNO_PROXY=\"10.42.0.0/16,localhost\"\n"
    );
    assert_eq!(mode(&env_file), 0o600);
}

#[test]
fn k3s_without_its_binary_refuses_clearly() {
    let host = Host::new(&[]);
    let out = host.run("k3s", "init", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: the k3s binary is missing at /usr/local/bin/k3s")
            && stderr.contains("never downloads"),
        "{stderr}"
    );
    assert!(host.calls().is_empty(), "nothing was started");
    let bad = host.run("k3s", "leader", &[]);
    assert!(text(&bad.stderr).contains("MUSTER_ROLE 'leader' is not init, control-plane or worker"));
}

#[test]
fn extra_cas_go_to_the_trust_store() {
    let host = Host::new(&[]);
    host.put_binary("/usr/local/bin/k3s");
    fs::create_dir_all(host.file("/etc/muster/ca")).expect("mkdir");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    fs::write(host.file("/etc/muster/ca/registry.pem"), pem).expect("ca");
    ok(&host.run(
        "k3s",
        "init",
        &[("MUSTER_CA_FILES", "/etc/muster/ca/registry.pem")],
    ));
    let trusted = host.file("/usr/local/share/ca-certificates/muster-registry.crt");
    assert_eq!(fs::read_to_string(trusted).ok().as_deref(), Some(pem));
    let out = host.run(
        "k3s",
        "init",
        &[("MUSTER_CA_FILES", "/etc/muster/ca/missing.pem")],
    );
    assert!(text(&out.stderr)
        .contains("CA file /etc/muster/ca/missing.pem (MUSTER_CA_FILES) does not exist"));
}

#[test]
fn rke2_server_and_agent_get_their_units_config_and_proxy_file() {
    for (role, unit) in [("init", "rke2-server"), ("worker", "rke2-agent")] {
        let host = Host::new(&[]);
        host.put_binary("/usr/local/bin/rke2");
        ok(&host.run("rke2", role, &[("HTTPS_PROXY", "http://proxy:3128")]));
        assert_config_installed(&host, "/etc/rancher/rke2/config.yaml");
        let unit_text =
            fs::read_to_string(host.file(&format!("/etc/systemd/system/{unit}.service")))
                .unwrap_or_default();
        let exec = unit.trim_start_matches("rke2-");
        assert!(
            unit_text.contains(&format!("ExecStart=/usr/local/bin/rke2 {exec}\n")),
            "{unit_text}"
        );
        let env_file = host.file(&format!("/etc/default/{unit}"));
        assert_eq!(
            fs::read_to_string(&env_file).unwrap_or_default(),
            "HTTPS_PROXY=\"http://proxy:3128\"\n"
        );
        assert_eq!(mode(&env_file), 0o600);
        assert!(host
            .calls()
            .contains(&format!("systemctl restart --no-block {unit}")));
        let again = ok(&host.run("rke2", role, &[("HTTPS_PROXY", "http://proxy:3128")]));
        assert!(again.contains("nothing to do"), "{again}");
        assert_eq!(
            host.calls(),
            [format!("systemctl is-active --quiet {unit}")]
        );
    }
}

#[test]
fn rke2_installs_from_the_air_gap_artifacts_and_keeps_the_tarball_unit() {
    let host = Host::new(&[]);
    write_exe(
        &host.file("/var/lib/muster/rke2-artifacts/install.sh"),
        FAKE_RKE2_INSTALL,
    );
    ok(&host.run("rke2", "control-plane", &[]));
    let calls = host.calls();
    let artifacts = host.file("/var/lib/muster/rke2-artifacts");
    assert_eq!(
        calls[0],
        format!(
            "rke2-install.sh ARTIFACT_PATH={} TYPE=server",
            artifacts.display()
        )
    );
    assert!(
        !host
            .file("/etc/systemd/system/rke2-server.service")
            .exists(),
        "the tarball's unit is used"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("systemctl restart --no-block rke2-server")
    );
}

#[test]
fn rke2_without_binary_or_artifacts_refuses_clearly() {
    let host = Host::new(&[]);
    let out = host.run("rke2", "worker", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: the rke2 binary is missing at /usr/local/bin/rke2 and there is no install script"), "{stderr}");
    assert!(host.calls().is_empty());
}

fn kubeadm_host() -> Host {
    let host = Host::new(&[
        ("kubeadm", FAKE_KUBEADM),
        ("kubectl", FAKE_KUBECTL),
        ("kubelet", "#!/bin/sh\nexit 0\n"),
    ]);
    let status = Command::new(which("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=muster-test-ca",
        ])
        .arg("-keyout")
        .arg(host.base.join("ca.key"))
        .arg("-out")
        .arg(&host.ca)
        .output()
        .expect("openssl");
    assert!(status.status.success(), "{}", text(&status.stderr));
    host
}

/// The hash as the kubeadm join documentation computes it.
fn documented_ca_hash(ca: &Path) -> String {
    let pipeline = format!(
        "openssl x509 -pubkey -in '{}' | openssl rsa -pubin -outform der 2>/dev/null | openssl dgst -sha256 -hex | sed 's/^.* //'",
        ca.display()
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &pipeline])
        .output()
        .expect("sh");
    text(&out.stdout).trim().to_owned()
}

#[test]
fn kubeadm_init_runs_once_and_publishes_the_ca_hash() {
    let host = kubeadm_host();
    fs::write(&host.secrets_out, "OTHER=kept\n").expect("secrets out");
    let stderr = ok(&host.run("kubeadm", "init", &[]));
    assert!(
        stderr.contains("kubeadm join 10.0.0.100:6443 --token <redacted>"),
        "output kept, secrets hidden: {stderr}"
    );
    let config = host.config.display().to_string();
    let calls = host.calls();
    assert!(calls.contains(&"systemctl enable kubelet".to_owned()));
    assert!(calls.contains(&format!(
        "kubeadm init --config {config} --upload-certs --skip-token-print --skip-certificate-key-print"
    )));
    let hash = documented_ca_hash(&host.ca);
    assert_eq!(hash.len(), 64, "{hash}");
    let want = format!("OTHER=kept\nCA_CERT_HASH=sha256:{hash}\n");
    assert_eq!(
        fs::read_to_string(&host.secrets_out).ok().as_deref(),
        Some(want.as_str())
    );
    assert_eq!(mode(&host.secrets_out), 0o600);

    // A re-run does not init again; it refreshes the uploaded certificates and the hash line.
    ok(&host.run("kubeadm", "init", &[]));
    let calls = host.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("kubeadm init --config")),
        "{calls:?}"
    );
    assert!(calls.contains(&format!(
        "kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config {config}"
    )));
    assert_eq!(
        fs::read_to_string(&host.secrets_out).ok().as_deref(),
        Some(want.as_str())
    );
}

/// `MUSTER_ROLE=upload-certs` (the leader, before a late or retried control-plane join):
/// only `kubeadm init phase upload-certs` with the config that carries the fresh certificate
/// key — never an init or a join, and nothing published — and only on a host that runs a
/// control plane. Other distributions' hooks refuse the role.
#[test]
fn kubeadm_uploads_the_certificates_again_only_on_a_control_plane_host() {
    let host = kubeadm_host();
    let out = host.run("kubeadm", "upload-certs", &[]);
    assert!(!out.status.success(), "no control plane here yet");
    assert!(
        text(&out.stderr).contains("/etc/kubernetes/admin.conf is missing"),
        "{}",
        text(&out.stderr)
    );
    assert!(!host.calls().iter().any(|c| c.starts_with("kubeadm")));
    ok(&host.run("kubeadm", "init", &[]));
    let published = fs::read_to_string(&host.secrets_out).expect("secrets out");
    host.calls();
    ok(&host.run("kubeadm", "upload-certs", &[]));
    let config = host.config.display().to_string();
    let kubeadm: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("kubeadm"))
        .collect();
    assert_eq!(
        kubeadm,
        vec![format!(
            "kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config {config}"
        )]
    );
    assert_eq!(
        fs::read_to_string(&host.secrets_out).ok().as_deref(),
        Some(published.as_str()),
        "an upload publishes nothing"
    );
    let k3s = Host::new(&[]);
    let out = k3s.run("k3s", "upload-certs", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("MUSTER_ROLE 'upload-certs' is not init, control-plane or worker"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn kubeadm_init_over_a_dead_control_plane_asks_for_a_reset() {
    let host = kubeadm_host();
    fs::create_dir_all(host.file("/etc/kubernetes")).expect("mkdir");
    fs::write(host.file("/etc/kubernetes/admin.conf"), "").expect("admin.conf");
    let out = host.run("kubeadm", "init", &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr)
        .contains("/etc/kubernetes/admin.conf exists but the API server does not answer"));
    assert!(!host.calls().iter().any(|c| c.starts_with("kubeadm init")));
}

#[test]
fn kubeadm_joins_once_per_node() {
    for role in ["control-plane", "worker"] {
        let host = kubeadm_host();
        ok(&host.run("kubeadm", role, &[]));
        let config = host.config.display().to_string();
        assert!(
            host.calls()
                .contains(&format!("kubeadm join --config {config}")),
            "{role}"
        );
        let again = ok(&host.run("kubeadm", role, &[]));
        assert!(again.contains("already joined"), "{again}");
        assert!(
            !host.calls().iter().any(|c| c.starts_with("kubeadm")),
            "{role}"
        );
    }
    // A control plane whose join stopped half-way is not taken as joined.
    let host = kubeadm_host();
    fs::create_dir_all(host.file("/etc/kubernetes")).expect("mkdir");
    fs::write(host.file("/etc/kubernetes/kubelet.conf"), "").expect("kubelet.conf");
    let out = host.run("kubeadm", "control-plane", &[]);
    assert!(
        text(&out.stderr).contains("has no API server manifest"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn kubeadm_without_its_binary_refuses_clearly() {
    let host = Host::new(&[("kubelet", "#!/bin/sh\n")]);
    let out = host.run("kubeadm", "init", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("error: kubeadm is not on PATH"),
        "{}",
        text(&out.stderr)
    );
    assert!(host.calls().is_empty());
}
