//! The TSIG key file: BIND's `tsig-keygen` format, parsed into a [`TsigKey`].
//!
//! The operator points `[ddns] tsig_key_file` at the file `tsig-keygen` printed (the same text
//! BIND's `named.conf` includes):
//!
//! ```text
//! key "muster-site" {
//!     algorithm hmac-sha256;
//!     secret "base64...";
//! };
//! ```
//!
//! Comments (`#`, `//`, `/* */`) and any whitespace are allowed; exactly one `key` clause;
//! `hmac-sha256` or `hmac-sha512`. Every error names the key (when its name was read) and the
//! line. The secret never appears in `Debug` or in an error. The updater turns the key into a
//! hickory [`TSigner`] with [`TsigKey::signer`].

use std::fmt;
use std::path::Path;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::Name;
use hickory_proto::rr::TSigner;

/// How far (seconds) the server's clock may be from ours before it answers BADTIME; BIND and
/// nsupdate use 300 s.
pub const TSIG_FUDGE_S: u16 = 300;

/// Largest key file read, in bytes: a key file is a few lines.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The MAC algorithms muster accepts (BIND's `tsig-keygen` default is hmac-sha256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsigAlg {
    /// `hmac-sha256`
    HmacSha256,
    /// `hmac-sha512`
    HmacSha512,
}

impl TsigAlg {
    /// The name BIND uses in `algorithm ...;`.
    pub fn bind_name(self) -> &'static str {
        match self {
            TsigAlg::HmacSha256 => "hmac-sha256",
            TsigAlg::HmacSha512 => "hmac-sha512",
        }
    }

    fn hickory(self) -> TsigAlgorithm {
        match self {
            TsigAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
            TsigAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// A TSIG key: its name (what the server knows it by), algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as written in the file (`key "NAME" { ... }`).
    pub name: String,
    /// The MAC algorithm.
    pub algorithm: TsigAlg,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field(
                "secret",
                &format_args!("<{} bytes, redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TsigKeyError {
    /// The file could not be read.
    #[error("TSIG key file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Not the `key "name" { ... };` grammar.
    #[error("TSIG key file line {line}: expected {expected}, found {found}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// No `key` clause at all.
    #[error("TSIG key file holds no key clause (expected the output of tsig-keygen)")]
    NoKey,
    /// More than one `key` clause: which one to use would be a guess.
    #[error("TSIG key file holds several keys ({names}); keep exactly one")]
    SeveralKeys {
        /// The key names, comma separated.
        names: String,
    },
    /// An algorithm muster does not accept.
    #[error("TSIG key {key:?} line {line}: unknown algorithm {algorithm:?} (use hmac-sha256 or hmac-sha512)")]
    UnknownAlgorithm {
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
        /// What the file said.
        algorithm: String,
    },
    /// The secret is not base64 (the secret itself is not echoed).
    #[error("TSIG key {key:?} line {line}: the secret is not valid base64")]
    BadBase64 {
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
    },
    /// The secret decodes to nothing.
    #[error("TSIG key {key:?} line {line}: the secret is empty")]
    EmptySecret {
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
    },
    /// No `secret` statement.
    #[error("TSIG key {key:?}: missing secret")]
    MissingSecret {
        /// The key.
        key: String,
    },
    /// No `algorithm` statement.
    #[error("TSIG key {key:?}: missing algorithm")]
    MissingAlgorithm {
        /// The key.
        key: String,
    },
    /// A statement given twice, or one BIND's key clause does not have.
    #[error("TSIG key {key:?} line {line}: {reason}")]
    Statement {
        /// The key.
        key: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The key name is not a DNS name.
    #[error("TSIG key {key:?}: not a valid DNS name: {reason}")]
    BadName {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl TsigKey {
    /// Reads and parses a key file.
    pub fn from_file(path: &Path) -> Result<Self, TsigKeyError> {
        let read_err = |reason: String| TsigKeyError::Read {
            path: path.display().to_string(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read_err(e.to_string()))?
            .len();
        if len > MAX_KEY_FILE_BYTES {
            return Err(read_err(format!(
                "{len} bytes, more than {MAX_KEY_FILE_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        Self::parse(&text)
    }

    /// Parses the text of a key file.
    pub fn parse(text: &str) -> Result<Self, TsigKeyError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0 };
        let mut keys = Vec::new();
        while let Some(tok) = parser.next() {
            match &tok.kind {
                Kind::Word(w) if w == "key" => keys.push(parser.key_clause()?),
                _ => return Err(syntax(&tok, "`key`")),
            }
        }
        match keys.len() {
            0 => Err(TsigKeyError::NoKey),
            1 => Ok(keys.remove(0)),
            _ => Err(TsigKeyError::SeveralKeys {
                names: keys
                    .iter()
                    .map(|k| format!("{:?}", k.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The secret's length in bytes (the secret itself stays inside).
    pub fn secret_len(&self) -> usize {
        self.secret.len()
    }

    /// The hickory signer for UPDATE messages.
    pub fn signer(&self) -> Result<TSigner, TsigKeyError> {
        let bad_name = |reason: String| TsigKeyError::BadName {
            key: self.name.clone(),
            reason,
        };
        let name = Name::from_ascii(&self.name).map_err(|e| bad_name(e.to_string()))?;
        TSigner::new(
            self.secret.clone(),
            self.algorithm.hickory(),
            name,
            TSIG_FUDGE_S,
        )
        .map_err(|e| bad_name(e.to_string()))
    }

    /// A key from its parts (tests and tools that generate keys).
    pub fn new(name: &str, algorithm: TsigAlg, secret: Vec<u8>) -> Self {
        TsigKey {
            name: name.to_string(),
            algorithm,
            secret,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semi,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    line: usize,
}

impl Token {
    fn text(&self) -> String {
        match &self.kind {
            Kind::Word(w) => format!("`{w}`"),
            Kind::Quoted(q) => format!("{q:?}"),
            Kind::Open => "`{`".into(),
            Kind::Close => "`}`".into(),
            Kind::Semi => "`;`".into(),
        }
    }
}

fn syntax(tok: &Token, expected: &'static str) -> TsigKeyError {
    TsigKeyError::Syntax {
        line: tok.line,
        expected,
        found: tok.text(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, TsigKeyError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'*') => {
                let start = line;
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        None => {
                            return Err(TsigKeyError::Syntax {
                                line: start,
                                expected: "`*/` closing this comment",
                                found: "end of file".into(),
                            })
                        }
                        Some('/') if prev == '*' => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            prev = ch;
                        }
                    }
                }
            }
            '{' => out.push(Token {
                kind: Kind::Open,
                line,
            }),
            '}' => out.push(Token {
                kind: Kind::Close,
                line,
            }),
            ';' => out.push(Token {
                kind: Kind::Semi,
                line,
            }),
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(TsigKeyError::Syntax {
                                line: start,
                                expected: "a closing quote",
                                found: "end of file".into(),
                            })
                        }
                        Some('"') => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                        }
                    }
                }
                out.push(Token {
                    kind: Kind::Quoted(s),
                    line: start,
                });
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push(Token {
                    kind: Kind::Word(w),
                    line,
                });
            }
        }
    }
    Ok(out)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    for ch in chars.by_ref() {
        if ch == '\n' {
            *line += 1;
            return;
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let tok = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        tok
    }

    fn expect(&mut self, want: Kind, expected: &'static str) -> Result<Token, TsigKeyError> {
        match self.next() {
            Some(tok) if tok.kind == want => Ok(tok),
            Some(tok) => Err(syntax(&tok, expected)),
            None => Err(self.eof(expected)),
        }
    }

    fn eof(&self, expected: &'static str) -> TsigKeyError {
        TsigKeyError::Syntax {
            line: self.tokens.last().map_or(1, |t| t.line),
            expected,
            found: "end of file".into(),
        }
    }

    /// A value (`hmac-sha256` or `"..."`) and its `;`.
    fn value(&mut self, expected: &'static str) -> Result<(String, usize), TsigKeyError> {
        let (value, line) = match self.next() {
            Some(Token {
                kind: Kind::Word(w) | Kind::Quoted(w),
                line,
            }) => (w, line),
            Some(tok) => return Err(syntax(&tok, expected)),
            None => return Err(self.eof(expected)),
        };
        self.expect(Kind::Semi, "`;`")?;
        Ok((value, line))
    }

    /// After `key`: `"name" { algorithm ..; secret ".."; };`
    fn key_clause(&mut self) -> Result<TsigKey, TsigKeyError> {
        let name = match self.next() {
            Some(Token {
                kind: Kind::Word(w) | Kind::Quoted(w),
                ..
            }) => w,
            Some(tok) => return Err(syntax(&tok, "the key name")),
            None => return Err(self.eof("the key name")),
        };
        self.expect(Kind::Open, "`{`")?;
        let mut algorithm: Option<TsigAlg> = None;
        let mut secret: Option<Vec<u8>> = None;
        loop {
            let tok = self
                .next()
                .ok_or_else(|| self.eof("`algorithm`, `secret` or `}`"))?;
            let stmt = match &tok.kind {
                Kind::Close => break,
                Kind::Word(w) => w.clone(),
                _ => return Err(syntax(&tok, "`algorithm`, `secret` or `}`")),
            };
            let twice = |what: &str| TsigKeyError::Statement {
                key: name.clone(),
                line: tok.line,
                reason: format!("{what} given twice"),
            };
            match stmt.as_str() {
                "algorithm" => {
                    let (alg, line) = self.value("the algorithm name")?;
                    if algorithm.is_some() {
                        return Err(twice("algorithm"));
                    }
                    algorithm = Some(match alg.to_ascii_lowercase().as_str() {
                        "hmac-sha256" => TsigAlg::HmacSha256,
                        "hmac-sha512" => TsigAlg::HmacSha512,
                        _ => {
                            return Err(TsigKeyError::UnknownAlgorithm {
                                key: name,
                                line,
                                algorithm: alg,
                            })
                        }
                    });
                }
                "secret" => {
                    let (b64, line) = self.value("the quoted base64 secret")?;
                    if secret.is_some() {
                        return Err(twice("secret"));
                    }
                    let compact: String = b64.split_whitespace().collect();
                    let bytes = data_encoding::BASE64
                        .decode(compact.as_bytes())
                        .map_err(|_| TsigKeyError::BadBase64 {
                            key: name.clone(),
                            line,
                        })?;
                    if bytes.is_empty() {
                        return Err(TsigKeyError::EmptySecret { key: name, line });
                    }
                    secret = Some(bytes);
                }
                other => {
                    return Err(TsigKeyError::Statement {
                        key: name.clone(),
                        line: tok.line,
                        reason: format!(
                            "unknown statement `{other}` (a key has algorithm and secret)"
                        ),
                    })
                }
            }
        }
        self.expect(Kind::Semi, "`;` after the key's `}`")?;
        let algorithm =
            algorithm.ok_or_else(|| TsigKeyError::MissingAlgorithm { key: name.clone() })?;
        let secret = secret.ok_or_else(|| TsigKeyError::MissingSecret { key: name.clone() })?;
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_FILE: &str = include_str!("../tests/data/tsig-keygen-sha256.key");
    const SHA512_FILE: &str = include_str!("../tests/data/tsig-keygen-sha512.key");

    #[test]
    fn parses_real_tsig_keygen_output() {
        let k = TsigKey::parse(SHA256_FILE).expect("sha256 file");
        assert_eq!(k.name, "muster-site");
        assert_eq!(k.algorithm, TsigAlg::HmacSha256);
        assert_eq!(k.secret_len(), 32);
        k.signer().expect("signer");
        let k = TsigKey::parse(SHA512_FILE).expect("sha512 file");
        assert_eq!(k.name, "edge.site.example");
        assert_eq!(k.algorithm, TsigAlg::HmacSha512);
        assert_eq!(k.secret_len(), 64);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = TsigKey::parse("key k { algorithm hmac-sha256; secret \"c2VjcmV0LXZhbHVl\"; };")
            .expect("parse");
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("c2VjcmV0"), "{dbg}");
        assert!(!dbg.contains("secret-value"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn comments_and_whitespace() {
        let text = "# made by tsig-keygen\n// another\n/* a\n block */ key\n\"a.b\"\n{\n  algorithm   HMAC-SHA512 ; # trailing\n secret \"YWJj\nZGVm\";\n}\n;\n";
        let k = TsigKey::parse(text).expect("parse");
        assert_eq!(k.name, "a.b");
        assert_eq!(k.algorithm, TsigAlg::HmacSha512);
        assert_eq!(k.secret, b"abcdef");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = TsigKey::parse("key \"k1\" {\n algorithm hmac-md5;\n secret \"YWJj\";\n};")
            .expect_err("md5");
        assert_eq!(
            e,
            TsigKeyError::UnknownAlgorithm {
                key: "k1".into(),
                line: 2,
                algorithm: "hmac-md5".into()
            }
        );
        assert!(e.to_string().contains("\"k1\" line 2"), "{e}");

        let e =
            TsigKey::parse("key \"k2\" {\n algorithm hmac-sha256;\n secret \"not base64!\";\n};")
                .expect_err("b64");
        assert_eq!(
            e,
            TsigKeyError::BadBase64 {
                key: "k2".into(),
                line: 3
            }
        );
        assert!(!e.to_string().contains("not base64!"));

        let e = TsigKey::parse("key \"k3\" { algorithm hmac-sha256; };").expect_err("no secret");
        assert_eq!(e, TsigKeyError::MissingSecret { key: "k3".into() });
        assert!(e.to_string().contains("k3"));

        let e = TsigKey::parse("key \"k4\" { secret \"YWJj\"; };").expect_err("no alg");
        assert_eq!(e, TsigKeyError::MissingAlgorithm { key: "k4".into() });

        let two = format!("{SHA256_FILE}\n{SHA512_FILE}");
        let e = TsigKey::parse(&two).expect_err("two keys");
        assert_eq!(
            e,
            TsigKeyError::SeveralKeys {
                names: "\"muster-site\", \"edge.site.example\"".into()
            }
        );

        assert_eq!(
            TsigKey::parse("# nothing\n").expect_err("empty"),
            TsigKeyError::NoKey
        );

        let e = TsigKey::parse("key k5 {\n algorithm hmac-sha256\n secret \"YWJj\"; };")
            .expect_err("missing semicolon");
        assert!(matches!(e, TsigKeyError::Syntax { line: 3, .. }), "{e:?}");

        let e =
            TsigKey::parse("key k6 { algorithm hmac-sha256; secret \"YWJj\"; secret \"YWJj\"; };")
                .expect_err("twice");
        assert!(
            e.to_string().contains("k6") && e.to_string().contains("twice"),
            "{e}"
        );

        let e =
            TsigKey::parse("key k7 { algorithm hmac-sha256; secret \"YWJj\";").expect_err("eof");
        assert!(matches!(e, TsigKeyError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn reads_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tsig.key");
        std::fs::write(&path, SHA512_FILE).expect("write");
        assert_eq!(
            TsigKey::from_file(&path).expect("read").algorithm,
            TsigAlg::HmacSha512
        );
        let missing = TsigKey::from_file(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(missing, TsigKeyError::Read { .. }));
    }
}
