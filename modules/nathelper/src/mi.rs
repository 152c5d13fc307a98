//! MI commands (Kamailio's names; 1.2's nathelper had none).
//!
//! * `nh_enable_ping [0|1]`: switch NAT pinging off/on; without an argument, show the
//!   state and the number of pings sent.
//! * `nh_enable_rtpp url 0|1`: disable (for good, until enabled again) or enable the RTP
//!   proxy `url` (as written in `rtpproxy_sock`, without the weight).
//! * `nh_show_rtpp`: every proxy with its weight, whether it is disabled and, if
//!   temporarily, the unix time from which it is re-tested.

use openser_core::mi::{MiArg, MiNode, MiReply};

use crate::{ping, rtpp};

pub fn nh_enable_ping(args: &[MiArg]) -> MiReply {
    match args.first().map(|a| a.value.trim()) {
        None => MiReply::ok(vec![
            MiNode::new("Status", if ping::enabled() { "1" } else { "0" }),
            MiNode::new("Sent", ping::sent().to_string()),
        ]),
        Some(v) => match v.parse::<u32>() {
            Ok(n) => {
                ping::set_enabled(n != 0);
                MiReply::ok(vec![])
            }
            Err(_) => MiReply::err(400, "Bad parameter value"),
        },
    }
}

pub fn nh_enable_rtpp(args: &[MiArg]) -> MiReply {
    if args.len() != 2 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let url = args[0].value.trim();
    let Ok(on) = args[1].value.trim().parse::<u32>() else {
        return MiReply::err(400, "Bad parameter value");
    };
    let set = crate::rtpp_set();
    let Some(i) = set.nodes.iter().position(|n| n.url == url) else {
        return MiReply::err(404, "RTP proxy not found");
    };
    set.state
        .set(i, if on != 0 { 0 } else { rtpp::DISABLED_FOR_GOOD });
    MiReply::ok(vec![])
}

pub fn nh_show_rtpp(_args: &[MiArg]) -> MiReply {
    let set = crate::rtpp_set();
    let nodes = set
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let st = set.state.get(i);
            let recheck = if st == 0 || st == rtpp::DISABLED_FOR_GOOD {
                0
            } else {
                st
            };
            MiNode::new("node", n.url.clone())
                .attr("index", i.to_string())
                .attr("disabled", if st != 0 { "1" } else { "0" })
                .attr("weight", n.weight.to_string())
                .attr("recheck_ticks", recheck.to_string())
        })
        .collect();
    MiReply::ok(nodes)
}
