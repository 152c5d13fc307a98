//! usrloc MI commands (reference §9.3): `ul_rm`, `ul_rm_contact`, `ul_dump`,
//! `ul_flush`, `ul_add`, `ul_show_contact`.

use openser_core::mi::{MiArg, MiNode, MiReply};

use super::{ContactInfo, Match, Q_UNSPECIFIED, UDomain, domains, find_domain, params};

/// Table and AOR arguments: the domain and the AOR as the table stores it.
fn table_aor(args: &[MiArg]) -> Result<(&'static UDomain, String), MiReply> {
    let (Some(t), Some(a)) = (args.first(), args.get(1)) else {
        return Err(MiReply::err(400, "Too few or too many arguments"));
    };
    let d = find_domain(t.value.trim()).ok_or_else(|| MiReply::err(404, "Table not found"))?;
    let mut aor = t_aor(&a.value);
    if params().use_domain && !aor.contains('@') {
        return Err(MiReply::err(400, "Domain missing in AOR"));
    }
    if !params().case_sensitive {
        aor.make_ascii_lowercase();
    }
    Ok((d, aor))
}

fn t_aor(s: &str) -> String {
    s.trim().to_owned()
}

pub(crate) fn ul_rm(args: &[MiArg]) -> MiReply {
    if args.len() != 2 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let (d, aor) = match table_aor(args) {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Deleting a missing AOR succeeds, as in 1.2.
    let _ = d.delete_aor(aor.as_bytes());
    MiReply::ok(Vec::new())
}

pub(crate) fn ul_rm_contact(args: &[MiArg]) -> MiReply {
    if args.len() != 3 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let (d, aor) = match table_aor(args) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let contact = args[2].value.trim();
    d.with_slot(aor.as_bytes(), |g| {
        let Some(r) = g.get_urecord(aor.as_bytes()) else {
            return MiReply::err(404, "AOR not found");
        };
        let ids = g.contact_ids(r).unwrap_or_default();
        let infos = g.contacts(r).unwrap_or_default();
        let Some(id) = ids
            .into_iter()
            .zip(infos)
            .find(|(_, c)| c.contact == contact)
            .map(|(id, _)| id)
        else {
            return MiReply::err(404, "Contact not found");
        };
        if g.delete_ucontact(r, id).is_err() {
            return MiReply::err(500, "Server Internal Error");
        }
        let _ = g.release_urecord(r);
        MiReply::ok(Vec::new())
    })
}

fn q_text(q: i32) -> String {
    if q == Q_UNSPECIFIED {
        return "-1".into();
    }
    format!("{:.2}", f64::from(q) / 100.0)
}

fn expires_text(c: &ContactInfo, now: i64) -> String {
    if c.expires == 0 {
        "permanent".into()
    } else if c.expires <= now {
        "expired".into()
    } else {
        (c.expires - now).to_string()
    }
}

pub(crate) fn ul_dump(args: &[MiArg]) -> MiReply {
    let brief = args
        .first()
        .is_some_and(|a| a.value.trim().eq_ignore_ascii_case("brief"));
    let now = openser_core::clock::now();
    let mut out = Vec::new();
    for d in domains() {
        let counts = d.slot_counts();
        let records = d.dump();
        let mut dn = MiNode::new("Domain", d.name())
            .attr("table", d.size().to_string())
            .attr("records", records.len().to_string())
            .attr(
                "max_slot",
                counts.iter().max().copied().unwrap_or(0).to_string(),
            );
        for (aor, cs) in records {
            let mut an = MiNode::new("AOR", String::from_utf8_lossy(&aor).into_owned());
            if !brief {
                for c in cs {
                    let mut cn = MiNode::new("Contact", c.contact.clone()).attr("Q", q_text(c.q));
                    cn = cn
                        .kid(MiNode::new("Expires", expires_text(&c, now)))
                        .kid(MiNode::new("Callid", c.callid.clone()))
                        .kid(MiNode::new("Cseq", c.cseq.to_string()));
                    if !c.user_agent.is_empty() {
                        cn = cn.kid(MiNode::new("User-agent", c.user_agent.clone()));
                    }
                    if !c.received.is_empty() {
                        cn = cn.kid(MiNode::new("Received", c.received.clone()));
                    }
                    if !c.path.is_empty() {
                        cn = cn.kid(MiNode::new("Path", c.path.clone()));
                    }
                    cn = cn
                        .kid(MiNode::new("State", c.state.as_str()))
                        .kid(MiNode::new("Flags", c.flags.to_string()))
                        .kid(MiNode::new("Cflags", c.cflags.to_string()))
                        .kid(MiNode::new(
                            "Socket",
                            if c.socket.is_empty() {
                                "NULL".to_owned()
                            } else {
                                c.socket.clone()
                            },
                        ))
                        .kid(MiNode::new("Methods", c.methods.to_string()));
                    an = an.kid(cn);
                }
            }
            dn = dn.kid(an);
        }
        out.push(dn);
    }
    MiReply::ok(out)
}

pub(crate) fn ul_flush(_args: &[MiArg]) -> MiReply {
    // db_mode 0 only: nothing to write back.
    MiReply::ok(Vec::new())
}

pub(crate) fn ul_add(args: &[MiArg]) -> MiReply {
    if args.len() != 9 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let (d, aor) = match table_aor(args) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let num = |i: usize| args[i].value.trim().parse::<i64>().ok();
    let contact = args[2].value.trim().to_owned();
    let (Some(exp), Some(flags), Some(cflags), Some(methods)) = (num(3), num(6), num(7), num(8))
    else {
        return MiReply::err(400, "Bad parameter");
    };
    let q = match args[4].value.trim().parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 100.0).round() as i32,
        _ => return MiReply::err(400, "Bad parameter"),
    };
    if contact.is_empty() || exp < 0 {
        return MiReply::err(400, "Bad parameter");
    }
    let now = openser_core::clock::now();
    let ci = ContactInfo {
        contact,
        expires: if exp == 0 { 0 } else { now + exp },
        q,
        callid: "dfjrewr12386fd6-343@openser.mi".into(),
        cseq: 1,
        flags: flags as u32,
        cflags: cflags as u32,
        methods: methods as u32,
        user_agent: "SIP Router MI Server".into(),
        last_modified: now,
        ..ContactInfo::default()
    };
    d.with_slot(aor.as_bytes(), |g| {
        let r = match g.get_or_insert_urecord(aor.as_bytes()) {
            Ok(r) => r,
            Err(_) => return MiReply::err(500, "Server Internal Error"),
        };
        let res = match g.get_ucontact(
            r,
            ci.contact.as_bytes(),
            ci.callid.as_bytes(),
            ci.cseq + 1,
            now,
        ) {
            Ok(Match::Found(id)) => g.update_ucontact(r, id, &ci),
            Ok(_) => g.insert_ucontact(r, &ci).map(|_| ()),
            Err(e) => Err(e),
        };
        let _ = g.release_urecord(r);
        match res {
            Ok(()) => MiReply::ok(Vec::new()),
            Err(_) => MiReply::err(500, "Server Internal Error"),
        }
    })
}

pub(crate) fn ul_show_contact(args: &[MiArg]) -> MiReply {
    if args.len() != 2 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let (d, aor) = match table_aor(args) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = openser_core::clock::now();
    let Some(cs) = d.get_contacts(aor.as_bytes()) else {
        return MiReply::err(404, "AOR not found");
    };
    let nodes: Vec<MiNode> = cs
        .iter()
        .filter(|c| c.is_valid(now))
        .map(|c| {
            let mut v = format!(
                "<{}>;q={};expires={};flags=0x{:X};cflags=0x{:X};socket=<{}>;methods=0x{:X}",
                c.contact,
                q_text(c.q),
                if c.expires == 0 { 0 } else { c.expires - now },
                c.flags,
                c.cflags,
                if c.socket.is_empty() {
                    "NULL"
                } else {
                    &c.socket
                },
                c.methods
            );
            if !c.received.is_empty() {
                v.push_str(&format!(";received=<{}>", c.received));
            }
            if !c.user_agent.is_empty() {
                v.push_str(&format!(";user_agent=<{}>", c.user_agent));
            }
            if !c.path.is_empty() {
                v.push_str(&format!(";path=<{}>", c.path));
            }
            MiNode::new("Contact", v)
        })
        .collect();
    if nodes.is_empty() {
        return MiReply::err(404, "AOR has no contacts");
    }
    MiReply::ok(nodes)
}
