//! The operator CLI as a user meets it: exit codes and messages for bad configs, keygen, and
//! status without an agent. Runs the real binary; needs no root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn muster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .output()
        .expect("muster runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CONFIG: &str = r#"
[node]
name = "edge-1"
data_dir = "DIR/data"
[site]
key_file = "DIR/site.key"
expected_nodes = 3
control_plane_count = 3
[network]
interface = "eth0"
listen_port = 7946
bootstrap = []
[rpc]
socket = "DIR/muster.sock"
"#;

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("muster.toml");
    std::fs::write(&path, text.replace("DIR", &dir.display().to_string())).unwrap();
    path.display().to_string()
}

#[test]
fn keygen_writes_a_0600_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");
    let key_s = key.display().to_string();
    let o = muster(&["keygen", "--out", &key_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/"),
        "swarm.key format"
    );
    let again = muster(&["keygen", "--out", &key_s]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        text,
        "key untouched"
    );
}

#[test]
fn good_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CONFIG);
    let o = muster(&["check-config", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            CONFIG.replace("control_plane_count = 3", "control_plane_count = 2"),
            "site.control_plane_count",
        ),
        (
            CONFIG.replace("expected_nodes = 3", "expected_nodez = 3"),
            "expected_nodez",
        ),
        (CONFIG.replace("interface = \"eth0\"\n", ""), "interface"),
        (
            CONFIG.replace("bootstrap = []", "bootstrap = [\"not an address\"]"),
            "network.bootstrap",
        ),
        (CONFIG.replace("[rpc]", "[rpc\n"), "line"),
    ];
    for (text, key) in cases {
        let cfg = write_config(dir.path(), &text);
        for sub in ["check-config", "agent"] {
            let o = muster(&[sub, "--config", &cfg]);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{sub} with bad {key}: {}",
                stderr(&o)
            );
            assert!(
                stderr(&o).contains(key),
                "{sub}: message names {key}: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn missing_config_file_is_named() {
    let o = muster(&["agent", "--config", "/nonexistent/muster.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/muster.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_site_key_stops_the_agent_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CONFIG);
    let o = muster(&["agent", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("site.key_file") && stderr(&o).contains("site.key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_without_an_agent_says_so() {
    let o = muster(&["status", "--socket", "/nonexistent/muster.sock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is `muster agent` running?"),
        "{}",
        stderr(&o)
    );
}
