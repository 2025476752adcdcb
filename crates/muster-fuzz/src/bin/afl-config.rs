//! AFL++ driver of `muster_fuzz::config_parse` (target `config`); built and run by `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::config_parse(data);
    });
}
