//! AFL++ driver of `muster_fuzz::cluster_state_apply` (target `cluster_state`); built and run by `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::cluster_state_apply(data);
    });
}
