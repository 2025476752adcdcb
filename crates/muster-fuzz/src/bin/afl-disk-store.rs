//! AFL++ driver of `muster_fuzz::disk_store_open` (target `disk_store`); built and run by `scripts/fuzz.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        muster_fuzz::disk_store_open(data);
    });
}
