//! AFL++ driver of `muster_fuzz::envelope_from_member` (target `envelope_member`); built and run by `scripts/fuzz.sh`.

fn main() {
    muster_fuzz::warm_up();
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::envelope_from_member(data);
    });
}
