//! AFL++ driver of `muster_fuzz::identity_load` (target `identity`); built and run by `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::identity_load(data);
    });
}
