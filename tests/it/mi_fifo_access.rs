//! MI FIFO access (issue 18, item 8): the FIFO is never world-writable, and a reply
//! FIFO name cannot leave `reply_dir` nor write through a symlink planted in it.

use crate::harness::*;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

fn cfg(mode: &str) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=1\nloadmodule \"mi_fifo.so\"\n\
         modparam(\"mi_fifo\", \"fifo_name\", \"{{DIR}}/openser_fifo\")\n\
         modparam(\"mi_fifo\", \"reply_dir\", \"{{DIR}}/replies/\")\n{mode}"
    )
}

fn send_raw(dir: &std::path::Path, req: &str) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("openser_fifo"))
        .expect("open the MI FIFO")
        .write_all(req.as_bytes())
        .expect("write the MI request");
}

#[test]
fn fifo_mode_is_never_world_writable_and_replies_stay_in_reply_dir() {
    // Default mode: 0660; 0666 is created 0664 with a warning.
    for (mode, want, warned) in [
        ("", 0o660, false),
        ("modparam(\"mi_fifo\", \"fifo_mode\", 0666)\n", 0o664, true),
    ] {
        let port = free_udp_port();
        let dir = TempDir::new("fifo");
        std::fs::create_dir(dir.file("replies")).unwrap();
        // The server's directory is its own; reply_dir must exist before start.
        let cfg_text = cfg(mode).replace(
            "{DIR}/replies/",
            &format!("{}/", dir.file("replies").display()),
        );
        let mut s = Server::start_on(port, &cfg_text, &["-DD", "-E"]);
        let sdir = s.dir.path().to_path_buf();
        assert!(wait_fifo(&sdir), "{}", s.log());
        let m = std::fs::metadata(sdir.join("openser_fifo")).unwrap();
        assert!(m.file_type().is_fifo());
        assert_eq!(m.permissions().mode() & 0o7777, want, "mode {mode:?}");
        assert_eq!(
            s.log().contains("never world-writable"),
            warned,
            "{}",
            s.log()
        );

        if warned {
            // A reply name with a path: refused, nothing written outside reply_dir.
            let outside = dir.file("escaped");
            send_raw(&sdir, ":ps:../escaped\n\n");
            assert!(
                wait_until(Duration::from_secs(5), || s.log().contains("'../escaped'")
                    || s.log().contains("\"../escaped\" leaves reply_dir")),
                "{}",
                s.log()
            );
            assert!(!outside.exists());
            // A symlink planted in reply_dir, pointing at a file outside: not followed.
            let target = dir.file("precious");
            std::fs::write(&target, "keep me\n").unwrap();
            std::os::unix::fs::symlink(&target, dir.file("replies").join("link")).unwrap();
            send_raw(&sdir, ":ps:link\n\n");
            assert!(
                wait_until(Duration::from_secs(5), || s.log().contains("reply fifo")
                    && s.log().contains("link")),
                "{}",
                s.log()
            );
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
        }
        assert!(s.stop().success(), "{}", s.log());
    }
}
