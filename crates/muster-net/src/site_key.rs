//! The site key (pre-shared key of the private network) in go-ipfs `swarm.key` format:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! `muster keygen` writes it with [`format_site_key`]; the agent binary reads it with
//! [`parse_site_key`] and hands the bytes to [`crate::NetConfig::psk`]. Errors describe the
//! problem without echoing any part of the key.

use crate::NetError;

const HEADER: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";

/// Parses a site key file. Accepts LF or CRLF line endings, surrounding whitespace on each line
/// and upper- or lower-case hex.
pub fn parse_site_key(text: &str) -> Result<[u8; 32], NetError> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    match lines.next() {
        Some(HEADER) => {}
        Some(_) => return Err(NetError::site_key(format!("first line must be {HEADER}"))),
        None => return Err(NetError::site_key("file is empty")),
    }
    match lines.next() {
        Some(ENCODING) => {}
        Some(other) if is_encoding_name(other) => {
            return Err(NetError::site_key(format!(
                "unsupported encoding {other}: only {ENCODING} is supported"
            )))
        }
        _ => {
            return Err(NetError::site_key(format!(
                "second line must be {ENCODING}"
            )))
        }
    }
    let Some(hex) = lines.next() else {
        return Err(NetError::site_key(format!(
            "expected 64 hex digits after {ENCODING}, found nothing"
        )));
    };
    if hex.len() != 64 {
        return Err(NetError::site_key(format!(
            "expected 64 hex digits after {ENCODING}, found {} characters",
            hex.chars().count()
        )));
    }
    let mut key = [0u8; 32];
    for (index, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(NetError::site_key(format!(
                "expected 64 hex digits after {ENCODING}, found a non-hex character"
            )));
        };
        key[index] = (high << 4) | low;
    }
    if lines.next().is_some() {
        return Err(NetError::site_key("unexpected content after the key line"));
    }
    Ok(key)
}

/// Formats `key` as a site key file (lower-case hex, trailing newline).
pub fn format_site_key(key: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(HEADER.len() + ENCODING.len() + 67);
    out.push_str(HEADER);
    out.push('\n');
    out.push_str(ENCODING);
    out.push('\n');
    for byte in key {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out.push('\n');
    out
}

/// Whether a line looks like an encoding name (`/base64/`): safe to echo in an error. Anything
/// else may hold key material (say `/base16/` and the key joined on one line) and is not echoed.
fn is_encoding_name(line: &str) -> bool {
    let Some(name) = line.strip_prefix('/').and_then(|l| l.strip_suffix('/')) else {
        return false;
    };
    name.len() <= 14
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
        && name.bytes().any(|b| !b.is_ascii_hexdigit())
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_key() -> [u8; 32] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5))
    }

    fn error_of(text: &str) -> String {
        parse_site_key(text)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn format_then_parse_round_trips() {
        let key = sample_key();
        let text = format_site_key(&key);
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
        assert!(text.ends_with('\n'));
        assert_eq!(parse_site_key(&text).expect("valid"), key);
    }

    #[test]
    fn accepts_crlf_uppercase_and_no_trailing_newline() {
        let key = sample_key();
        let text = format_site_key(&key)
            .to_uppercase()
            .replace("/KEY/SWARM/PSK/1.0.0/", HEADER);
        let text = text.replace("/BASE16/", ENCODING).replace('\n', "\r\n");
        assert_eq!(parse_site_key(text.trim_end()).expect("valid"), key);
    }

    #[test]
    fn agrees_with_libp2p_key_file_format() {
        let key = sample_key();
        let ours = format_site_key(&key);
        let theirs: libp2p::pnet::PreSharedKey = ours.parse().expect("libp2p parses our format");
        assert_eq!(
            parse_site_key(&theirs.to_key_file()).expect("we parse theirs"),
            key
        );
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        assert_eq!(error_of(""), "site key file: file is empty");
        assert_eq!(
            error_of("/key/swarm/psk/2.0.0/\n/base16/\n00\n"),
            "site key file: first line must be /key/swarm/psk/1.0.0/"
        );
        assert_eq!(
            error_of("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n"),
            "site key file: unsupported encoding /base64/: only /base16/ is supported"
        );
        assert_eq!(
            error_of("/key/swarm/psk/1.0.0/\n"),
            "site key file: second line must be /base16/"
        );
        assert_eq!(
            error_of("/key/swarm/psk/1.0.0/\n/base16/\n"),
            "site key file: expected 64 hex digits after /base16/, found nothing"
        );
        assert_eq!(
            error_of("/key/swarm/psk/1.0.0/\n/base16/\nabcd\n"),
            "site key file: expected 64 hex digits after /base16/, found 4 characters"
        );
        let not_hex = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}zz\n", "0".repeat(62));
        assert_eq!(
            error_of(&not_hex),
            "site key file: expected 64 hex digits after /base16/, found a non-hex character"
        );
        let extra = format!("{}more\n", format_site_key(&sample_key()));
        assert_eq!(
            error_of(&extra),
            "site key file: unexpected content after the key line"
        );
    }

    #[test]
    fn an_encoding_line_joined_with_the_key_is_not_echoed() {
        // Found by muster-fuzz (regressions/site_key): the key went into the error, hence the log.
        let hex = "052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec11365b80";
        let e = error_of(&format!("/key/swarm/psk/1.0.0/\n/base16/{hex}\n"));
        assert!(!e.contains(&hex[..16]), "{e}");
        assert_eq!(e, "site key file: second line must be /base16/");
    }

    #[test]
    fn errors_never_echo_key_material() {
        let secret = "f00dfeed".repeat(8);
        let text = format!("/key/swarm/psk/1.0.0/\n/base16/\n{secret}0\n");
        assert!(!error_of(&text).contains("f00d"));
    }
}
