//! Mapping between libp2p peer ids, raw ed25519 public keys and muster's numeric node ids.
//!
//! The agent binary (`crates/muster`) uses these to turn an authenticated [`PeerId`] from a
//! [`crate::NetEvent`] into the `u64` node id that muster-core and Raft speak, and to rebuild a
//! peer id from a public key stored in replicated membership.

use libp2p::identity::{ed25519, PublicKey};
use libp2p::PeerId;

/// Multihash code of the identity hash, which libp2p uses for ed25519 peer ids.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The raw 32-byte ed25519 public key embedded in `peer`, or `None` if the peer id does not
/// inline an ed25519 key (e.g. an RSA peer id, which is a SHA-256 hash).
pub fn public_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// The peer id of the ed25519 public key `public_key`, or `None` if the bytes are not a valid
/// ed25519 point.
pub fn peer_id_of(public_key: &[u8; 32]) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(public_key).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// muster's node id for `peer`: the first 8 bytes of its ed25519 public key read big-endian,
/// with 0 (which Raft reserves for "no node") mapped to 1. `None` if not an ed25519 peer id.
pub fn node_id_of(peer: &PeerId) -> Option<u64> {
    public_key_of(peer).map(|key| node_id_of_key(&key))
}

/// [`node_id_of`] for a raw public key.
pub fn node_id_of_key(public_key: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&public_key[..8]);
    match u64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn node_id_round_trips_through_peer_id() {
        for _ in 0..16 {
            let keypair = Keypair::generate_ed25519();
            let peer = keypair.public().to_peer_id();
            let key = public_key_of(&peer).expect("ed25519 peer id");
            assert_eq!(peer_id_of(&key), Some(peer));
            let expected = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
            assert_eq!(node_id_of(&peer), Some(expected.max(1)));
            assert_eq!(
                node_id_of(&peer_id_of(&key).expect("valid key")),
                Some(expected.max(1))
            );
        }
    }

    #[test]
    fn zero_prefix_maps_to_one() {
        let mut key = [0u8; 32];
        key[31] = 7;
        assert_eq!(node_id_of_key(&key), 1);
        key[0] = 0x80;
        assert_eq!(node_id_of_key(&key), 0x8000_0000_0000_0000);
    }

    #[test]
    fn non_ed25519_peer_ids_have_no_node_id() {
        // A peer id that hashes its key (SHA-256 multihash) instead of inlining it.
        let hashed = PeerId::random();
        assert_eq!(public_key_of(&hashed), None);
        assert_eq!(node_id_of(&hashed), None);
    }

    #[test]
    fn invalid_points_have_no_peer_id() {
        // y = 2 does not decompress to a curve point.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(peer_id_of(&bad), None);
    }
}
