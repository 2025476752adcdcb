//! Pure DNS message logic: the term stamp, what the server serves, the compare-and-swap
//! decision and the RFC 2136 UPDATE that carries it.
//!
//! No sockets here: the updater actor (`updater.rs`) reads the server through a
//! [`crate::DnsServer`], hands what it read to [`decide`], and sends what [`build_update`]
//! makes. Everything is unit-tested against hand-built messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The label prepended to the endpoint name for the term stamp (`_muster.api.site.example.`).
pub const STAMP_LABEL: &str = "_muster";

/// Largest TXT string we parse as a stamp, in bytes.
const MAX_STAMP_BYTES: usize = 255;

/// Who last wrote the record, and in which term: the TXT beside the name holds
/// `"term=<N> id=<node>"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The raft term of the leader that wrote the record.
    pub term: u64,
    /// The node name of that leader.
    pub id: String,
}

impl Stamp {
    /// The TXT string, `term=<N> id=<node>`.
    pub fn to_txt(&self) -> String {
        format!("term={} id={}", self.term, self.id)
    }

    /// Parses a stamp string; anything else (someone's hand-written TXT) is `None`.
    pub fn parse(text: &[u8]) -> Option<Stamp> {
        if text.len() > MAX_STAMP_BYTES {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split(' ');
        let term = parts.next()?.strip_prefix("term=")?.parse().ok()?;
        let id = parts.next()?.strip_prefix("id=")?;
        if id.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Stamp {
            term,
            id: id.to_string(),
        })
    }
}

/// What the server serves for the endpoint: its A, AAAA and the stamp TXT RRset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// The A and AAAA addresses, sorted.
    pub addrs: Vec<IpAddr>,
    /// The TXT RRset at the stamp name, exactly as served (the CAS prerequisite).
    pub txt: Vec<TXT>,
}

impl Served {
    /// The stamp, when the TXT RRset is exactly one muster stamp.
    pub fn stamp(&self) -> Option<Stamp> {
        match self.txt.as_slice() {
            [one] => match &*one.txt_data {
                [s] => Stamp::parse(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// The term the record counts as written in: the stamp's, or 0 when there is none (absent
    /// or not a muster stamp, which any leader may replace).
    pub fn term(&self) -> u64 {
        self.stamp().map_or(0, |s| s.term)
    }
}

/// What the holder wants served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// Our raft term.
    pub term: u64,
    /// Our node name.
    pub id: String,
    /// Our addresses, sorted and deduplicated.
    pub addrs: Vec<IpAddr>,
}

impl Want {
    /// Our stamp.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            term: self.term,
            id: self.id.clone(),
        }
    }
}

/// The compare-and-swap decision on what the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The server serves our stamp and exactly our addresses.
    InSync,
    /// Replace, on the condition that the TXT RRset is still exactly `Served::txt`.
    Update,
    /// A newer (or same-term, other-node) leader's stamp is there: never overwrite it.
    Refuse(Stamp),
}

/// The rule: overwrite only a record whose stamp term is lower than ours (absent or foreign
/// counts as 0), or our own stamp (to repair the addresses).
pub fn decide(served: &Served, want: &Want) -> Decision {
    match served.stamp() {
        Some(s) if s.term > want.term || (s.term == want.term && s.id != want.id) => {
            Decision::Refuse(s)
        }
        Some(s) if s == want.stamp() && served.addrs == want.addrs => Decision::InSync,
        _ => Decision::Update,
    }
}

/// The stamp name beside the endpoint name.
pub fn stamp_name(name: &Name) -> Result<Name, hickory_proto::ProtoError> {
    name.prepend_label(STAMP_LABEL)
}

/// The one UPDATE (atomic at the server, RFC 2136 §3.4) that swaps the stamp and replaces the
/// addresses:
///
/// - zone: `zone` SOA;
/// - prerequisite: the stamp TXT RRset is exactly `served.txt` (§2.4.2, value dependent), or
///   does not exist (§2.4.3) when none was served;
/// - updates: delete the TXT RRset, add our stamp; delete the A and AAAA RRsets, add ours.
pub fn build_update(
    id: u16,
    zone: &Name,
    name: &Name,
    served: &Served,
    want: &Want,
    ttl_s: u32,
) -> Message {
    let stamp = match stamp_name(name) {
        Ok(n) => n,
        // The config check (`DnsConfig::validate`) built this name already.
        Err(_) => name.clone(),
    };
    let mut msg = Message::new(id, MessageType::Query, OpCode::Update);
    msg.metadata.recursion_desired = false;
    let mut zq = Query::query(zone.clone(), RecordType::SOA);
    zq.set_query_class(DNSClass::IN);
    msg.add_zone(zq);

    if served.txt.is_empty() {
        let mut none = Record::update0(stamp.clone(), 0, RecordType::TXT);
        none.dns_class = DNSClass::NONE;
        msg.add_pre_requisite(none);
    } else {
        for txt in &served.txt {
            msg.add_pre_requisite(Record::from_rdata(
                stamp.clone(),
                0,
                RData::TXT(txt.clone()),
            ));
        }
    }

    for (owner, rtype) in [
        (&stamp, RecordType::TXT),
        (name, RecordType::A),
        (name, RecordType::AAAA),
    ] {
        let mut del = Record::update0(owner.clone(), 0, rtype);
        del.dns_class = DNSClass::ANY;
        msg.add_update(del);
    }
    let txt = TXT::new(vec![want.stamp().to_txt()]);
    msg.add_update(Record::from_rdata(stamp, ttl_s, RData::TXT(txt)));
    for addr in &want.addrs {
        let data = match addr {
            IpAddr::V4(v4) => RData::A(A::from(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA::from(*v6)),
        };
        msg.add_update(Record::from_rdata(name.clone(), ttl_s, data));
    }
    msg
}

/// A plain query (no recursion: the server is authoritative).
pub fn build_query(id: u16, name: &Name, rtype: RecordType) -> Message {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name.clone(), rtype));
    msg
}

/// The answers of one query, by type; NXDOMAIN and NOERROR-without-answers are empty.
pub fn answers(
    reply: &Message,
    name: &Name,
    rtype: RecordType,
) -> Result<Vec<RData>, ResponseCode> {
    match reply.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => return Err(other),
    }
    Ok(reply
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name == *name)
        .map(|r| r.data.clone())
        .collect())
}

/// Builds [`Served`] from the three answer sets.
pub fn served_from(a: &[RData], aaaa: &[RData], txt: &[RData]) -> Served {
    let mut addrs: Vec<IpAddr> = a
        .iter()
        .filter_map(|d| match d {
            RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(*a))),
            _ => None,
        })
        .chain(aaaa.iter().filter_map(|d| match d {
            RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(*a))),
            _ => None,
        }))
        .collect();
    addrs.sort();
    addrs.dedup();
    let txt = txt
        .iter()
        .filter_map(|d| match d {
            RData::TXT(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    Served { addrs, txt }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn want(term: u64, id: &str, addrs: &[&str]) -> Want {
        Want {
            term,
            id: id.into(),
            addrs: addrs.iter().map(|a| a.parse().expect("ip")).collect(),
        }
    }

    fn served(stamp: Option<&str>, addrs: &[&str]) -> Served {
        Served {
            addrs: addrs.iter().map(|a| a.parse().expect("ip")).collect(),
            txt: stamp
                .map(|s| vec![TXT::new(vec![s.into()])])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn stamp_round_trip_and_junk() {
        let s = Stamp {
            term: 42,
            id: "edge-1".into(),
        };
        assert_eq!(Stamp::parse(s.to_txt().as_bytes()), Some(s));
        for junk in [
            "",
            "term=x id=a",
            "term=1",
            "term=1 id=",
            "term=1 id=a b",
            "id=a term=1",
        ] {
            assert_eq!(Stamp::parse(junk.as_bytes()), None, "{junk}");
        }
    }

    #[test]
    fn decide_follows_the_rule() {
        let w = want(6, "b", &["10.0.0.2"]);
        assert_eq!(decide(&served(None, &[]), &w), Decision::Update);
        assert_eq!(
            decide(&served(Some("hand written"), &["1.1.1.1"]), &w),
            Decision::Update
        );
        assert_eq!(
            decide(&served(Some("term=5 id=a"), &["10.0.0.1"]), &w),
            Decision::Update
        );
        assert_eq!(
            decide(&served(Some("term=6 id=b"), &["10.0.0.2"]), &w),
            Decision::InSync
        );
        // Our stamp, someone else's address: repair.
        assert_eq!(
            decide(&served(Some("term=6 id=b"), &["10.0.0.9"]), &w),
            Decision::Update
        );
        assert_eq!(
            decide(&served(Some("term=7 id=c"), &["10.0.0.3"]), &w),
            Decision::Refuse(Stamp {
                term: 7,
                id: "c".into()
            })
        );
        assert_eq!(
            decide(&served(Some("term=6 id=z"), &["10.0.0.3"]), &w),
            Decision::Refuse(Stamp {
                term: 6,
                id: "z".into()
            })
        );
    }

    #[test]
    fn update_is_conditional_on_the_txt_read() {
        let zone = name("site.example.");
        let n = name("api.site.example.");
        let w = want(6, "b", &["10.0.0.2", "fd00::2"]);
        let msg = build_update(
            7,
            &zone,
            &n,
            &served(Some("term=5 id=a"), &["10.0.0.1"]),
            &w,
            5,
        );
        assert_eq!(msg.metadata.op_code, OpCode::Update);
        assert_eq!(msg.zones()[0].name(), &zone);
        let pre = msg.prerequisites();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].name, name("_muster.api.site.example."));
        assert_eq!(pre[0].dns_class, DNSClass::IN);
        assert_eq!(
            pre[0].data,
            RData::TXT(TXT::new(vec!["term=5 id=a".into()]))
        );
        let ups = msg.updates();
        assert_eq!(ups.len(), 6, "{ups:?}");
        assert!(ups[..3].iter().all(|r| r.dns_class == DNSClass::ANY));
        assert_eq!(
            ups[3].data,
            RData::TXT(TXT::new(vec!["term=6 id=b".into()]))
        );
        assert_eq!(ups[3].ttl, 5);
        assert_eq!(ups[4].data, RData::A(A::new(10, 0, 0, 2)));
        assert_eq!(ups[5].record_type(), RecordType::AAAA);
        // Wire round trip keeps the sections.
        let bytes = msg.to_vec().expect("encode");
        let back = Message::from_vec(&bytes).expect("decode");
        assert_eq!(back.prerequisites().len(), 1);
        assert_eq!(back.updates().len(), 6);

        let fresh = build_update(7, &zone, &n, &served(None, &[]), &w, 5);
        let pre = fresh.prerequisites();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].dns_class, DNSClass::NONE);
        assert_eq!(pre[0].record_type(), RecordType::TXT);
    }

    #[test]
    fn answers_filter_by_name_and_type() {
        let n = name("api.site.example.");
        let mut reply = build_query(7, &n, RecordType::A);
        reply.add_answer(Record::from_rdata(
            n.clone(),
            5,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        reply.add_answer(Record::from_rdata(
            name("x.site.example."),
            5,
            RData::A(A::new(1, 1, 1, 1)),
        ));
        let got = answers(&reply, &n, RecordType::A).expect("ok");
        assert_eq!(got, vec![RData::A(A::new(10, 0, 0, 1))]);
        reply.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(
            answers(&reply, &n, RecordType::A),
            Err(ResponseCode::ServFail)
        );
        let s = served_from(&got, &[], &[]);
        assert_eq!(s.addrs, vec!["10.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(s.term(), 0);
    }
}
