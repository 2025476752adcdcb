//! AFL++ driver of `muster_fuzz::site_key_parse` (target `site_key`); built and run by `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::site_key_parse(data);
    });
}
