//! Operator keys as the config lists them (`[[rpc.operators]]`), and their hex form. A child
//! module of `config.rs` (which `muster-fuzz` compiles on its own), so it uses no `crate::`
//! paths; `tls.rs` re-exports it.

/// What an operator key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Status and events.
    ReadOnly,
    /// Also transfer, remove and plan actions.
    Admin,
}

/// An operator key the agent accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Its name in the config (for logs and errors).
    pub name: String,
    /// The ed25519 public key.
    pub public_key: [u8; 32],
    /// What it may do.
    pub access: Access,
}

/// 64 hex digits as a public key; the error says what is wrong.
pub fn parse_public_key(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits (an ed25519 public key, as `muster operator keygen` prints), got {} characters",
            hex.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A public key as 64 hex digits.
pub fn hex(public_key: &[u8; 32]) -> String {
    public_key.iter().map(|b| format!("{b:02x}")).collect()
}
