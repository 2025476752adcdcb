//! The short pass CI runs: every committed corpus and regression file through its harness, and
//! proptest properties over inputs built to reach deeper than random bytes (bounded case counts,
//! so the whole file stays well under 30 s in a debug build).

use std::path::Path;

use muster_fuzz::{frame, StoreFiles, TARGETS};
use proptest::prelude::*;

fn files_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_file_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, harness) in TARGETS {
        let corpus = files_of(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "{target} has a committed corpus");
        for file in corpus
            .iter()
            .chain(&files_of(&root.join("regressions").join(target)))
        {
            let data = std::fs::read(file).expect("corpus file reads");
            let run = std::panic::catch_unwind(|| harness(&data));
            assert!(run.is_ok(), "{} fails its harness", file.display());
        }
    }
}

#[test]
fn the_committed_seeds_are_what_fuzz_seeds_writes() {
    // The corpus is generated (`cargo run -p muster-fuzz --bin fuzz-seeds`): a seed that no
    // longer matches means the formats moved and the corpus must be regenerated.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in muster_fuzz::seeds::all() {
        let path = root.join(target).join(&name);
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale: rerun fuzz-seeds",
            path.display()
        );
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    muster_fuzz::seeds::all()
        .into_iter()
        .find(|(t, n, _)| *t == target && n == name)
        .map(|(_, _, b)| b)
        .expect("seed exists")
}

/// Flips, cuts and splices a real input: random bytes alone never get past the decoders.
fn mutate(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..6),
        0..=len,
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(move |(flips, cut, tail)| {
            let mut b = base.clone();
            for (i, x) in flips {
                if let Some(v) = b.get_mut(i) {
                    *v ^= x;
                }
            }
            b.truncate(cut);
            b.extend(tail);
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn outsider_envelopes_never_move_the_site(data in mutate(seed("envelope_outsider", "append"))) {
        muster_fuzz::envelope_from_outsider(&data);
    }

    #[test]
    fn member_envelopes_never_break_the_node(data in mutate(seed("envelope_member", "append-from0"))) {
        muster_fuzz::envelope_from_member(&data);
    }

    #[test]
    fn damaged_store_files_open_or_are_refused(data in mutate(seed("disk_store", "formed"))) {
        muster_fuzz::disk_store_open(&data);
    }

    #[test]
    fn apply_is_deterministic_on_damaged_entries(data in mutate(seed("cluster_state", "fresh"))) {
        muster_fuzz::cluster_state_apply(&data);
    }

    #[test]
    fn random_state_ops_apply_deterministically(ops in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
        let mut data = Vec::new();
        for op in &ops {
            frame(&mut data, op);
        }
        muster_fuzz::cluster_state_apply(&data);
    }

    #[test]
    fn site_key_text_parses_or_is_refused(text in "(/key/swarm/psk/1.0.0/\n)?(/base16/\r?\n)?[0-9a-fA-Fx \n]{0,70}") {
        muster_fuzz::site_key_parse(text.as_bytes());
    }

    #[test]
    fn identity_bytes_load_or_are_refused(data in mutate(seed("identity", "identity.key"))) {
        muster_fuzz::identity_load(&data);
    }

    #[test]
    fn config_values_parse_or_are_named(
        settle in "[0-9]{1,21}(ms|s|m|h)?",
        tick in "[0-9]{1,21}(ms|s|m)?",
        election in any::<i64>(),
        heartbeat in any::<i64>(),
    ) {
        let text = format!(
            "[site]\nkey_file = \"/k\"\n[network]\ninterface = \"eth0\"\n[formation]\nsettle = \"{settle}\"\n[timing]\ntick = \"{tick}\"\nelection_ticks = {election}\nheartbeat_ticks = {heartbeat}\n"
        );
        muster_fuzz::config_parse(text.as_bytes());
    }
}

#[test]
fn store_inputs_round_trip_through_their_encoding() {
    let files = StoreFiles {
        hard_state: Some(vec![1, 2]),
        applied: None,
        reset: Some(Vec::new()),
        log: Some(vec![3; 5]),
    };
    assert_eq!(StoreFiles::decode(&files.encode()), files);
}

#[test]
fn the_fixture_is_a_formed_site_whose_member_append_commits_and_whose_outsider_append_does_not() {
    use muster_core::Input;
    use muster_proto::Envelope;
    use prost::Message as _;

    let site = muster_fuzz::Site::get();
    assert_eq!(site.members.len(), 3, "three members");
    let append = seed("envelope_outsider", "append");
    let records: Vec<&[u8]> = muster_fuzz::Frames::new(&append).collect();
    let run = |from| {
        let mut node = site.boot();
        assert_eq!(node.cluster_id(), site.cluster_id, "booted into the site");
        assert_eq!(node.leader_id(), site.leader, "follows the leader");
        let before = node.status().commit_index;
        for r in &records {
            let envelope = Envelope::decode(*r).expect("seed decodes");
            node.handle(Input::Message { from, envelope })
                .expect("handled");
        }
        let joined = node.cluster_state().members.iter().any(|m| m.id == 99);
        (before, node.status().commit_index, joined)
    };
    let (before, after, joined) = run(site.leader);
    assert!(
        after > before,
        "the leader's append commits ({before} -> {after})"
    );
    assert!(joined, "the committed conf change added the learner");
    let (before, after, joined) = run(site.outsider);
    assert_eq!(after, before, "an outsider's append commits nothing");
    assert!(!joined, "an outsider adds no member");
}
