//! Module `mi_xmlrpc`: the MI over XML-RPC (reference §8.12), served by its own process
//! (`MI XMLRPC` in `ps`) with a small HTTP/1.1 server of ours (`openser_core::http`) in
//! place of 1.2's Abyss/xmlrpc-c.
//!
//! Any path is accepted (`/RPC2` by convention); the method name is the MI command,
//! each scalar parameter one argument. A 2xx reply is one string holding the reply
//! tree one node per line (`name:: value attr=val`, children after their parent,
//! no indentation), or with `reply_option` 1 an array of those lines; any other reply
//! is a fault with the MI code and reason. An unknown command is fault -506.
//!
//! The listening socket is bound in `mod_init` (a taken port stops the start-up);
//! `address` (an extension; 1.2 listened on every address) picks the interface.

pub mod xmlrpc;

use openser_core::http;
use openser_core::mi;
use openser_core::module::{BoolParam, IntParam, ModuleExports, Param, ProcExport, StrParam};
use openser_core::process::pt;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mi_xmlrpc",
    params: &[
        Param::int_with("port", &PORT, port_ok),
        Param::str("address", &ADDRESS),
        Param::str("log_file", &LOG_FILE),
        Param::bool("reply_option", &REPLY_ARRAY),
        Param::int("buffer_size", &BUFFER_SIZE),
    ],
    procs: &[ProcExport::new("MI XMLRPC", pt::PROC_FIFO, xmlrpc_process)],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

static PORT: IntParam = IntParam::new(8080);
static ADDRESS: StrParam = StrParam::new("0.0.0.0");
static LOG_FILE: StrParam = StrParam::new("");
static REPLY_ARRAY: BoolParam = BoolParam::new(false);
/// Accepted for 1.2 configurations; replies grow as needed.
static BUFFER_SIZE: IntParam = IntParam::new(8192);

static LISTENER: OnceLock<TcpListener> = OnceLock::new();

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// Time a client has to send its request, and to take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn port_ok(p: i64) -> Result<(), String> {
    if !(1024..=65535).contains(&p) {
        return Err("must be 1024..65535 (1.2 refuses privileged ports)".into());
    }
    Ok(())
}

fn mod_init() -> Result<(), String> {
    let hp = format!("{}:{}", ADDRESS.get(), PORT.get());
    let hp = if ADDRESS.get().contains(':') && !ADDRESS.get().starts_with('[') {
        format!("[{}]:{}", ADDRESS.get(), PORT.get())
    } else {
        hp
    };
    let addr: SocketAddr = hp
        .to_socket_addrs()
        .map_err(|e| format!("mi_xmlrpc: bad address {hp}: {e}"))?
        .next()
        .ok_or_else(|| format!("mi_xmlrpc: bad address {hp}"))?;
    let l =
        TcpListener::bind(addr).map_err(|e| format!("mi_xmlrpc: cannot listen on {addr}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("mi_xmlrpc: {e}"))?;
    let _ = LISTENER.set(l);
    Ok(())
}

/// The MI reply's tree as 1.2's xr_writer prints it: one line per node.
pub fn tree_lines(r: &mi::MiReply) -> Vec<String> {
    let text = mi::render(r, "");
    text.lines()
        .skip(1)
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Answer one XML-RPC body: (HTTP status, XML).
pub fn answer(body: &[u8], array: bool) -> String {
    let call = match xmlrpc::parse_call(body) {
        Ok(c) => c,
        Err(e) => {
            openser_core::log_err!("bad XML-RPC request: {e}");
            return xmlrpc::fault(-32700, &format!("parse error: {e}"));
        }
    };
    if !mi::exists(&call.method) {
        openser_core::log_err!("command {} is not available", call.method);
        return xmlrpc::fault(
            -506,
            &format!("Requested command ({}) is not available!", call.method),
        );
    }
    let args: Vec<mi::MiArg> = call
        .params
        .into_iter()
        .map(|value| mi::MiArg { name: None, value })
        .collect();
    let r = mi::run(&call.method, &args);
    if !(200..300).contains(&r.code) {
        return xmlrpc::fault(i32::from(r.code), &r.reason);
    }
    let lines = tree_lines(&r);
    if array {
        xmlrpc::response_array(&lines)
    } else {
        let mut s = String::new();
        for l in &lines {
            s.push_str(l);
            s.push('\n');
        }
        xmlrpc::response_string(&s)
    }
}

fn log_line(line: &str) {
    let f = LOG_FILE.get();
    if f.is_empty() {
        return;
    }
    if let Ok(mut fh) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(f)
    {
        let _ = writeln!(fh, "{line}");
    }
}

fn serve(mut s: std::net::TcpStream, peer: SocketAddr) {
    let _ = s.set_nonblocking(false);
    let out = match http::read_request(&mut s, MAX_BODY, IO_TIMEOUT) {
        Err((0, _)) => return,
        Err((code, reason)) => http::response(code, reason, "text/plain", reason.as_bytes(), &[]),
        Ok(req) if req.method != "POST" => {
            log_line(&format!("{peer} {} {} 405", req.method, req.target));
            http::response(
                405,
                "Method Not Allowed",
                "text/plain",
                b"POST only\n",
                &["Allow: POST"],
            )
        }
        Ok(req) => {
            let xml = answer(&req.body, REPLY_ARRAY.get());
            log_line(&format!("{peer} POST {} 200", req.target));
            http::response(
                200,
                "OK",
                "text/xml",
                xml.as_bytes(),
                &["Server: OpenSER MI XMLRPC"],
            )
        }
    };
    if let Err(e) = http::send(&mut s, &out, IO_TIMEOUT) {
        openser_core::log_dbg!("reply to {peer} failed: {e}");
    }
}

fn xmlrpc_process() -> ! {
    http::listener_process(LISTENER.get(), serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_faults() {
        mi::init_core();
        let ok = answer(
            b"<methodCall><methodName>version</methodName></methodCall>",
            false,
        );
        assert!(ok.contains("<string>Server:: OpenSER"), "{ok}");
        let arr = answer(
            b"<methodCall><methodName>uptime</methodName></methodCall>",
            true,
        );
        assert_eq!(arr.matches("<value><string>").count(), 3, "{arr}");
        let f = answer(
            b"<methodCall><methodName>nope</methodName></methodCall>",
            false,
        );
        assert!(f.contains("<int>-506</int>"), "{f}");
        let f = answer(
            b"<methodCall><methodName>get_statistics</methodName></methodCall>",
            false,
        );
        assert!(f.contains("<int>400</int>"), "{f}");
        assert!(answer(b"<junk", false).contains("<int>-32700</int>"));
    }
}
