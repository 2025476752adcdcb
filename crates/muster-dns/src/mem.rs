//! The in-memory side of the DNS seam: [`MemZone`], a zone that applies RFC 2136
//! prerequisites and updates (the subset the updater sends), and [`MemServer`], a
//! [`DnsServer`] over it that can inject faults (unreachable, a refusal rcode, a TSIG
//! rejection) and lets a test overwrite records as "someone else" or lose them as a restarted
//! server would. The updater's scenario tests drive it under `tokio::time::pause()`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use hickory_proto::op::{Message, ResponseCode, UpdateMessage};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::transport::{DnsServer, ExchangeError};

/// A fault the server injects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answers normally.
    #[default]
    None,
    /// Every exchange times out.
    Unreachable,
    /// Every UPDATE gets this rcode, signed.
    Refuse(ResponseCode),
    /// Every UPDATE's TSIG is rejected with this error (BADSIG, BADKEY, ...).
    RejectTsig(&'static str),
}

#[derive(Debug, Default)]
struct Inner {
    rrsets: BTreeMap<(Name, RecordType), Vec<RData>>,
    fault: Fault,
    updates_seen: u64,
    queries_seen: u64,
}

/// A shared zone; clones see the same records.
#[derive(Clone, Debug, Default)]
pub struct MemZone(Arc<Mutex<Inner>>);

impl MemZone {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has already failed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces an RRset (empty `data` deletes it), as someone else would.
    pub fn set(&self, name: &Name, rtype: RecordType, data: Vec<RData>) {
        let mut inner = self.lock();
        if data.is_empty() {
            inner.rrsets.remove(&(name.clone(), rtype));
        } else {
            inner.rrsets.insert((name.clone(), rtype), data);
        }
    }

    /// An RRset's data.
    pub fn get(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
        self.lock()
            .rrsets
            .get(&(name.clone(), rtype))
            .cloned()
            .unwrap_or_default()
    }

    /// Drops every record (a server restarted with an empty zone).
    pub fn clear(&self) {
        self.lock().rrsets.clear();
    }

    /// Sets the fault.
    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
    }

    /// UPDATE messages received.
    pub fn updates_seen(&self) -> u64 {
        self.lock().updates_seen
    }

    /// Queries received.
    pub fn queries_seen(&self) -> u64 {
        self.lock().queries_seen
    }

    /// Applies an UPDATE: prerequisites, then all updates or none.
    pub fn apply(&self, msg: &Message) -> ResponseCode {
        let mut inner = self.lock();
        if let Some(rcode) = check_prerequisites(&inner.rrsets, msg.prerequisites()) {
            return rcode;
        }
        for up in msg.updates() {
            apply_update(&mut inner.rrsets, up);
        }
        ResponseCode::NoError
    }

    fn answer(&self, query: &Message) -> Message {
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.authoritative = true;
        reply.add_queries(query.queries.iter().cloned());
        let inner = self.lock();
        for q in &query.queries {
            if let Some(set) = inner.rrsets.get(&(q.name().clone(), q.query_type())) {
                for data in set {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 5, data.clone()));
                }
            }
        }
        reply
    }
}

fn check_prerequisites(
    rrsets: &BTreeMap<(Name, RecordType), Vec<RData>>,
    pre: &[Record],
) -> Option<ResponseCode> {
    let mut wanted: BTreeMap<(Name, RecordType), Vec<RData>> = BTreeMap::new();
    for r in pre {
        let key = (r.name.clone(), r.record_type());
        match r.dns_class {
            DNSClass::NONE if rrsets.contains_key(&key) => return Some(ResponseCode::YXRRSet),
            DNSClass::NONE => {}
            DNSClass::ANY if !rrsets.contains_key(&key) => return Some(ResponseCode::NXRRSet),
            DNSClass::ANY => {}
            _ => wanted.entry(key).or_default().push(r.data.clone()),
        }
    }
    for (key, mut want) in wanted {
        let mut have = rrsets.get(&key).cloned().unwrap_or_default();
        want.sort();
        want.dedup();
        have.sort();
        if want != have {
            return Some(ResponseCode::NXRRSet);
        }
    }
    None
}

fn apply_update(rrsets: &mut BTreeMap<(Name, RecordType), Vec<RData>>, up: &Record) {
    let key = (up.name.clone(), up.record_type());
    match up.dns_class {
        DNSClass::ANY => {
            rrsets.remove(&key);
        }
        DNSClass::NONE => {
            if let Some(set) = rrsets.get_mut(&key) {
                set.retain(|d| *d != up.data);
                if set.is_empty() {
                    rrsets.remove(&key);
                }
            }
        }
        _ => {
            let set = rrsets.entry(key).or_default();
            if !set.contains(&up.data) {
                set.push(up.data.clone());
            }
        }
    }
}

/// A [`DnsServer`] over a [`MemZone`].
#[derive(Clone, Debug)]
pub struct MemServer {
    zone: MemZone,
    addr: SocketAddr,
}

impl MemServer {
    /// A server over `zone`.
    pub fn new(zone: MemZone) -> Self {
        MemServer {
            zone,
            addr: SocketAddr::from(([192, 0, 2, 53], 53)),
        }
    }

    fn fault(&self) -> Fault {
        self.zone.lock().fault.clone()
    }

    fn timeout(&self) -> ExchangeError {
        ExchangeError::Timeout {
            server: self.addr,
            timeout_ms: 1_000,
        }
    }
}

impl DnsServer for MemServer {
    async fn update(&self, msg: Message) -> Result<ResponseCode, ExchangeError> {
        self.zone.lock().updates_seen += 1;
        match self.fault() {
            Fault::None => Ok(self.zone.apply(&msg)),
            Fault::Unreachable => {
                tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
                Err(self.timeout())
            }
            Fault::Refuse(rcode) => Ok(rcode),
            Fault::RejectTsig(err) => Err(ExchangeError::TsigRejected {
                rcode: "NOTAUTH".into(),
                tsig_error: err.into(),
            }),
        }
    }

    async fn query(&self, msg: Message) -> Result<Message, ExchangeError> {
        self.zone.lock().queries_seen += 1;
        if self.fault() == Fault::Unreachable {
            tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
            return Err(self.timeout());
        }
        Ok(self.zone.answer(&msg))
    }
}
