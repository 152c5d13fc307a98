//! The XML of the presence packages, outside input all of it (PUBLISH bodies, rules
//! documents an operator or an XCAP server stored): PIDF (RFC 3863) checked and
//! composed, pres-rules (RFC 5025 on RFC 4745 common policy) evaluated, watcher-info
//! (RFC 3858) written. Parsing is roxmltree's (no DTDs, so no entity expansion);
//! nothing here panics on input (fuzz target `presence_xml`).

use roxmltree::{Document, Node};

/// Escape text for an attribute or element.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// `pres:user@domain` of a `sip:` URI.
fn entity_of(pres: &str) -> String {
    let s = pres
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    format!("pres:{s}")
}

/// Check a PIDF document: well-formed XML whose root is `presence`.
pub fn check_pidf(body: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let doc = Document::parse(s).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().name() != "presence" {
        return Err(format!(
            "root element is <{}>, not <presence>",
            root.tag_name().name()
        ));
    }
    Ok(())
}

/// The PIDF of a presentity with nothing published: one closed tuple.
pub fn closed_body(pres: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\n\
         <tuple id=\"closed\"><status><basic>closed</basic></status></tuple>\n\
         </presence>\n",
        esc(&entity_of(pres))
    )
    .into_bytes()
}

/// One PIDF from several documents of one presentity (oldest first): the root of the
/// first (its name and `entity`) with the namespace declarations of all the roots, and
/// the child elements of every document, in order. Documents that do not parse as
/// PIDF are left out; `None` when none is left.
pub fn compose(pres: &str, docs: &[Vec<u8>]) -> Option<Vec<u8>> {
    let texts: Vec<&str> = docs
        .iter()
        .filter_map(|d| std::str::from_utf8(d).ok())
        .collect();
    let parsed: Vec<(&str, Document<'_>)> = texts
        .iter()
        .filter_map(|s| Some((*s, Document::parse(s).ok()?)))
        .filter(|(_, d)| d.root_element().tag_name().name() == "presence")
        .collect();
    if parsed.len() == 1 {
        return Some(parsed[0].0.as_bytes().to_vec());
    }
    let (first_text, first) = parsed.first()?;
    let root = first.root_element();
    let qname: String = first_text[root.range().start + 1..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
        .collect();
    let entity = root
        .attribute("entity")
        .map(str::to_string)
        .unwrap_or_else(|| entity_of(pres));
    let mut decls: Vec<(Option<String>, String)> = Vec::new();
    for (_, d) in &parsed {
        for ns in d.root_element().namespaces() {
            if ns.name() == Some("xml") {
                continue;
            }
            let prefix = ns.name().map(str::to_string);
            if !decls.iter().any(|(p, _)| *p == prefix) {
                decls.push((prefix, ns.uri().to_string()));
            }
        }
    }
    let mut out = String::with_capacity(texts.iter().map(|t| t.len()).sum::<usize>() + 256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.push_str(&qname);
    for (p, uri) in &decls {
        match p {
            Some(p) => out.push_str(&format!(" xmlns:{p}=\"{}\"", esc(uri))),
            None => out.push_str(&format!(" xmlns=\"{}\"", esc(uri))),
        }
    }
    out.push_str(&format!(" entity=\"{}\">\n", esc(&entity)));
    for (text, d) in &parsed {
        for child in d.root_element().children().filter(Node::is_element) {
            if let Some(raw) = text.get(child.range()) {
                out.push_str(raw);
                out.push('\n');
            }
        }
    }
    out.push_str(&format!("</{qname}>\n"));
    Some(out.into_bytes())
}

/// RFC 5025 `sub-handling`, ordered as the RFC combines them (the highest wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubHandling {
    Block,
    Confirm,
    PoliteBlock,
    Allow,
}

impl SubHandling {
    fn from_text(s: &str) -> Option<SubHandling> {
        match s.trim() {
            "block" => Some(SubHandling::Block),
            "confirm" => Some(SubHandling::Confirm),
            "polite-block" => Some(SubHandling::PoliteBlock),
            "allow" => Some(SubHandling::Allow),
            _ => None,
        }
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

fn same_uri(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        s.trim()
            .trim_start_matches("sips:")
            .trim_start_matches("sip:")
            .to_ascii_lowercase()
    };
    strip(a) == strip(b)
}

/// Whether an `identity` condition names the watcher (`watcher`: its URI, `domain`
/// its host).
fn identity_matches(identity: Node<'_, '_>, watcher: &str, domain: &str) -> bool {
    elements(identity).any(|e| match e.tag_name().name() {
        "one" => e.attribute("id").is_some_and(|id| same_uri(id, watcher)),
        "many" => {
            let in_domain = e
                .attribute("domain")
                .is_none_or(|d| d.eq_ignore_ascii_case(domain));
            let excepted = elements(e)
                .filter(|x| x.tag_name().name() == "except")
                .any(|x| {
                    x.attribute("id").is_some_and(|id| same_uri(id, watcher))
                        || x.attribute("domain")
                            .is_some_and(|d| d.eq_ignore_ascii_case(domain))
                });
            in_domain && !excepted
        }
        _ => false,
    })
}

/// Evaluate a pres-rules document for `watcher` (a `sip:` URI): the combined
/// `sub-handling` of the rules whose conditions hold (`None`: no rule applies). A
/// rule without conditions applies to everyone; `identity` is the condition checked
/// (`one`, `many` with `domain` and `except`); `validity` and `sphere` are not
/// checked (as 1.2). `Err` when the document is not a `ruleset`.
pub fn evaluate(doc: &str, watcher: &str) -> Result<Option<SubHandling>, String> {
    let d = Document::parse(doc).map_err(|e| e.to_string())?;
    let root = d.root_element();
    if root.tag_name().name() != "ruleset" {
        return Err(format!(
            "root element is <{}>, not <ruleset>",
            root.tag_name().name()
        ));
    }
    let domain = watcher
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .split([';', ':', '>'])
        .next()
        .unwrap_or("");
    let mut best: Option<SubHandling> = None;
    for rule in elements(root).filter(|r| r.tag_name().name() == "rule") {
        let applies = match child(rule, "conditions") {
            None => true,
            Some(conds) => elements(conds).all(|c| match c.tag_name().name() {
                "identity" => identity_matches(c, watcher, domain),
                _ => true,
            }),
        };
        if !applies {
            continue;
        }
        let handling = child(rule, "actions")
            .and_then(|a| child(a, "sub-handling"))
            .and_then(|s| s.text())
            .and_then(SubHandling::from_text);
        if let Some(h) = handling {
            best = Some(best.map_or(h, |b| b.max(h)));
        }
    }
    Ok(best)
}

/// A full watcher-info document (RFC 3858) for the `package` watchers of `pres`:
/// (id, URI, status, event) per watcher.
pub fn winfo_body(
    pres: &str,
    package: &str,
    version: u32,
    watchers: &[(&str, &str, &str, &str)],
) -> Vec<u8> {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"{version}\" state=\"full\">\n\
         <watcher-list resource=\"{}\" package=\"{}\">\n",
        esc(pres),
        esc(package)
    );
    for (id, uri, status, event) in watchers {
        out.push_str(&format!(
            "<watcher id=\"{}\" event=\"{}\" status=\"{}\">{}</watcher>\n",
            esc(id),
            esc(event),
            esc(status),
            esc(uri)
        ));
    }
    out.push_str("</watcher-list>\n</watcherinfo>\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="pres:bob@example.com">
  <tuple id="t1"><status><basic>open</basic></status><note>desk</note></tuple>
  <dm:person id="p1"/>
</presence>"#;
    const MOBILE: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:bob@example.com"><tuple id="t2"><status><basic>closed</basic></status><rpid:activities/></tuple></presence>"#;

    #[test]
    fn pidf_checked() {
        assert!(check_pidf(OPEN.as_bytes()).is_ok());
        assert!(check_pidf(b"<presence").is_err());
        assert!(check_pidf(b"<ruleset/>").is_err());
        assert!(check_pidf(b"\xff\xfe").is_err());
        assert!(check_pidf(b"<!DOCTYPE x [<!ENTITY a \"b\">]><presence/>").is_err());
    }

    #[test]
    fn documents_composed() {
        let one = compose("sip:bob@example.com", &[OPEN.as_bytes().to_vec()]).unwrap();
        assert_eq!(one, OPEN.as_bytes());
        let both = compose(
            "sip:bob@example.com",
            &[
                OPEN.as_bytes().to_vec(),
                b"junk".to_vec(),
                MOBILE.as_bytes().to_vec(),
            ],
        )
        .unwrap();
        let s = String::from_utf8(both).unwrap();
        assert!(check_pidf(s.as_bytes()).is_ok(), "{s}");
        let d = Document::parse(&s).unwrap();
        let tuples: Vec<_> = d
            .root_element()
            .children()
            .filter(|n| n.tag_name().name() == "tuple")
            .map(|n| n.attribute("id").unwrap().to_string())
            .collect();
        assert_eq!(tuples, ["t1", "t2"]);
        assert!(s.contains("xmlns:rpid="), "{s}");
        assert!(s.contains("entity=\"pres:bob@example.com\""));
        assert_eq!(compose("sip:x@y", &[b"<a/>".to_vec()]), None);
        assert_eq!(compose("sip:x@y", &[]), None);
    }

    #[test]
    fn closed_body_is_pidf() {
        let b = closed_body("sip:bob@example.com");
        assert!(check_pidf(&b).is_ok());
        assert!(
            String::from_utf8(b)
                .unwrap()
                .contains("<basic>closed</basic>")
        );
    }

    fn rules(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">{body}</cr:ruleset>"#
        )
    }

    #[test]
    fn rules_evaluated() {
        let doc = rules(
            r#"<cr:rule id="a"><cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/></cr:identity></cr:conditions>
               <cr:actions><sub-handling>allow</sub-handling></cr:actions></cr:rule>
               <cr:rule id="b"><cr:conditions><cr:identity><cr:one id="sip:carol@example.com"/></cr:identity></cr:conditions>
               <cr:actions><sub-handling>polite-block</sub-handling></cr:actions></cr:rule>
               <cr:rule id="c"><cr:conditions><cr:identity><cr:many domain="evil.com"><cr:except id="sip:good@evil.com"/></cr:many></cr:identity></cr:conditions>
               <cr:actions><sub-handling>block</sub-handling></cr:actions></cr:rule>"#,
        );
        let ev = |w: &str| evaluate(&doc, w).unwrap();
        assert_eq!(ev("sip:alice@example.com"), Some(SubHandling::Allow));
        assert_eq!(ev("sip:carol@example.com"), Some(SubHandling::PoliteBlock));
        assert_eq!(ev("sip:mallory@evil.com"), Some(SubHandling::Block));
        assert_eq!(ev("sip:good@evil.com"), None);
        assert_eq!(ev("sip:dave@example.com"), None);
        // the highest of the applying rules wins
        let doc = rules(
            r#"<cr:rule id="a"><cr:actions><sub-handling>block</sub-handling></cr:actions></cr:rule>
               <cr:rule id="b"><cr:conditions><cr:identity><cr:many/></cr:identity></cr:conditions><cr:actions><sub-handling>confirm</sub-handling></cr:actions></cr:rule>"#,
        );
        assert_eq!(
            evaluate(&doc, "sip:x@y").unwrap(),
            Some(SubHandling::Confirm)
        );
        assert!(evaluate("<presence/>", "sip:x@y").is_err());
        assert!(evaluate("<<<", "sip:x@y").is_err());
    }

    #[test]
    fn winfo_lists_watchers() {
        let b = winfo_body(
            "sip:bob@example.com",
            "presence",
            3,
            &[("t1", "sip:alice@example.com", "pending", "subscribe")],
        );
        let s = String::from_utf8(b).unwrap();
        let d = Document::parse(&s).unwrap();
        assert_eq!(d.root_element().attribute("version"), Some("3"));
        assert!(s.contains(">sip:alice@example.com</watcher>"));
        assert!(s.contains("status=\"pending\""));
    }
}
