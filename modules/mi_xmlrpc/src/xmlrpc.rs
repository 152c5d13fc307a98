//! XML-RPC for the MI: the `methodCall` parser (fuzzed) and the response writer.
//!
//! Accepted: `methodName` and `params` whose values are scalars (`string`, `int`/`i4`,
//! `double`, `boolean`, or bare text); each becomes one MI argument, as text. Arrays,
//! structs, base64 and dates are refused (1.2's parser took scalars only too).
//! Comments, processing instructions and the XML declaration are skipped; the five
//! predefined entities and character references are decoded; CDATA is kept as text.

/// A parsed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub params: Vec<String>,
}

/// A token of the small XML subset.
#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Open(String),
    Close(String),
    /// `<x/>`
    Empty(String),
    Text(String),
}

fn decode(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let ent = &after[..end];
        let ch = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                n.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{ent};"))?
            }
        };
        out.push(ch);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn tokens(doc: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = doc;
    while !rest.is_empty() {
        if out.len() > 100_000 {
            return Err("document too complex".into());
        }
        let Some(lt) = rest.find('<') else {
            out.push(Tok::Text(decode(rest)?));
            break;
        };
        if lt > 0 {
            out.push(Tok::Text(decode(&rest[..lt])?));
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            let e = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[e + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let e = r.find("]]>").ok_or("unterminated CDATA")?;
            out.push(Tok::Text(r[..e].to_string()));
            rest = &r[e + 3..];
        } else if let Some(r) = rest.strip_prefix("<?") {
            let e = r.find("?>").ok_or("unterminated processing instruction")?;
            rest = &r[e + 2..];
        } else if rest.starts_with("<!") {
            return Err("DTDs are not accepted".into());
        } else {
            let e = rest.find('>').ok_or("unterminated tag")?;
            let inner = &rest[1..e];
            rest = &rest[e + 1..];
            if let Some(name) = inner.strip_prefix('/') {
                out.push(Tok::Close(name.trim().to_string()));
            } else if let Some(name) = inner.strip_suffix('/') {
                out.push(Tok::Empty(tag_name(name)?));
            } else {
                out.push(Tok::Open(tag_name(inner)?));
            }
        }
    }
    Ok(out)
}

fn tag_name(inner: &str) -> Result<String, String> {
    let name = inner.split_whitespace().next().unwrap_or("");
    if name.is_empty() {
        return Err("empty tag".into());
    }
    Ok(name.to_string())
}

/// A cursor over tokens that skips white space between elements.
struct Cur {
    t: Vec<Tok>,
    i: usize,
}

impl Cur {
    fn skip_ws(&mut self) {
        while let Some(Tok::Text(s)) = self.t.get(self.i) {
            if !s.trim().is_empty() {
                break;
            }
            self.i += 1;
        }
    }
    fn open(&mut self, name: &str) -> Result<(), String> {
        self.skip_ws();
        match self.t.get(self.i) {
            Some(Tok::Open(n)) if n == name => {
                self.i += 1;
                Ok(())
            }
            other => Err(format!("<{name}> expected, found {other:?}")),
        }
    }
    fn close(&mut self, name: &str) -> Result<(), String> {
        self.skip_ws();
        match self.t.get(self.i) {
            Some(Tok::Close(n)) if n == name => {
                self.i += 1;
                Ok(())
            }
            other => Err(format!("</{name}> expected, found {other:?}")),
        }
    }
    /// Text up to the closing tag `name` (consumed).
    fn text_until(&mut self, name: &str) -> Result<String, String> {
        let mut s = String::new();
        while let Some(Tok::Text(t)) = self.t.get(self.i) {
            s.push_str(t);
            self.i += 1;
        }
        match self.t.get(self.i) {
            Some(Tok::Close(n)) if n == name => {
                self.i += 1;
                Ok(s)
            }
            other => Err(format!("</{name}> expected, found {other:?}")),
        }
    }
    fn peek_open(&mut self, name: &str) -> bool {
        self.skip_ws();
        matches!(self.t.get(self.i), Some(Tok::Open(n)) if n == name)
    }
}

fn value(c: &mut Cur) -> Result<String, String> {
    // <value> already consumed
    match c.t.get(c.i) {
        Some(Tok::Close(n)) if n == "value" => {
            c.i += 1;
            return Ok(String::new());
        }
        Some(Tok::Text(_)) => {
            // bare text, or white space before a typed element
            let save = c.i;
            c.skip_ws();
            if !matches!(c.t.get(c.i), Some(Tok::Open(_)) | Some(Tok::Empty(_))) {
                c.i = save;
                return c.text_until("value");
            }
        }
        _ => {}
    }
    let v = match c.t.get(c.i) {
        Some(Tok::Empty(t)) if t == "string" => {
            c.i += 1;
            String::new()
        }
        Some(Tok::Open(t)) => {
            let t = t.clone();
            c.i += 1;
            let s = c.text_until(&t)?;
            match t.as_str() {
                "string" => s,
                "int" | "i4" | "i8" => s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("bad <{t}> '{s}'"))?
                    .to_string(),
                "double" => {
                    let d = s.trim();
                    d.parse::<f64>()
                        .map_err(|_| format!("bad <double> '{s}'"))?;
                    d.to_string()
                }
                "boolean" => match s.trim() {
                    "0" | "1" => s.trim().to_string(),
                    _ => return Err(format!("bad <boolean> '{s}'")),
                },
                other => return Err(format!("<{other}> values are not accepted")),
            }
        }
        other => return Err(format!("a value expected, found {other:?}")),
    };
    c.close("value")?;
    Ok(v)
}

/// Parse a `methodCall` document.
pub fn parse_call(body: &[u8]) -> Result<Call, String> {
    let doc = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let mut c = Cur {
        t: tokens(doc)?,
        i: 0,
    };
    c.open("methodCall")?;
    c.open("methodName")?;
    let method = c.text_until("methodName")?.trim().to_string();
    if method.is_empty() {
        return Err("empty methodName".into());
    }
    let mut params = Vec::new();
    c.skip_ws();
    if matches!(c.t.get(c.i), Some(Tok::Empty(n)) if n == "params") {
        c.i += 1;
    } else if c.peek_open("params") {
        c.open("params")?;
        while c.peek_open("param") {
            c.open("param")?;
            c.open("value")?;
            params.push(value(&mut c)?);
            c.close("param")?;
            if params.len() > 1000 {
                return Err("too many params".into());
            }
        }
        c.close("params")?;
    }
    c.close("methodCall")?;
    c.skip_ws();
    if c.i != c.t.len() {
        return Err("content after </methodCall>".into());
    }
    Ok(Call { method, params })
}

/// XML text escaping.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            // characters XML 1.0 cannot carry
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// A response with one string parameter.
pub fn response_string(s: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><string>{}</string></value></param>\r\n</params>\r\n</methodResponse>\r\n",
        escape(s)
    )
}

/// A response with one array of strings.
pub fn response_array(items: &[String]) -> String {
    let mut v = String::new();
    for i in items {
        v.push_str(&format!("<value><string>{}</string></value>", escape(i)));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><array><data>{v}</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n"
    )
}

/// A fault response.
pub fn fault(code: i32, text: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<fault><value><struct>\r\n<member><name>faultCode</name><value><int>{code}</int></value></member>\r\n<member><name>faultString</name><value><string>{}</string></value></member>\r\n</struct></value></fault>\r\n</methodResponse>\r\n",
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_with_params() {
        let b = br#"<?xml version="1.0"?>
<!-- a call -->
<methodCall>
  <methodName>get_statistics</methodName>
  <params>
    <param><value><string>dialog:</string></value></param>
    <param><value>tm:</value></param>
    <param><value><int> 42 </int></value></param>
    <param><value><string>a &lt;b&gt; &amp; &#65;&#x42;</string></value></param>
    <param><value><string/></value></param>
    <param><value><![CDATA[<raw>]]></value></param>
    <param><value><boolean>1</boolean></value></param>
  </params>
</methodCall>
"#;
        let c = parse_call(b).unwrap();
        assert_eq!(c.method, "get_statistics");
        assert_eq!(
            c.params,
            vec!["dialog:", "tm:", "42", "a <b> & AB", "", "<raw>", "1"]
        );
    }

    #[test]
    fn no_params_and_errors() {
        let c = parse_call(b"<methodCall><methodName>ps</methodName></methodCall>").unwrap();
        assert!(c.params.is_empty());
        let c =
            parse_call(b"<methodCall><methodName>ps</methodName><params/></methodCall>").unwrap();
        assert!(c.params.is_empty());
        for bad in [
            &b"<methodCall><methodName></methodName></methodCall>"[..],
            b"<methodCall><methodName>x</methodName>",
            b"<methodCall><methodName>x</methodName><params><param><value><array/></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><int>z</int></value></param></params></methodCall>",
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall/>",
            b"<methodCall><methodName>x&bogus;</methodName></methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><more/>",
            b"\xff",
        ] {
            assert!(parse_call(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn writers_escape() {
        assert!(response_string("a<b").contains("<string>a&lt;b</string>"));
        assert!(fault(404, "Not & Found").contains("<int>404</int>"));
        assert!(fault(404, "Not & Found").contains("Not &amp; Found"));
        let a = response_array(&["x".into(), "y".into()]);
        assert!(a.contains(
            "<data><value><string>x</string></value><value><string>y</string></value></data>"
        ));
    }
}
