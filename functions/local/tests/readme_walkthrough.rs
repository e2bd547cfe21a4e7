//! The README's walk-through, run as written against the real `ticketbound-local` binary, with the server
//! restarted in the middle: nothing may be lost.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16, data_dir: &std::path::Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ticketbound-local");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the local server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn run(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_readme_walkthrough_works_as_written_across_a_restart() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("## Walk-through (local)")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README has a walk-through code block");
    let port = free_port();
    let block = block.replace("localhost:8080", &format!("localhost:{port}"));
    let (before, after) = block
        .split_once("# Alice lists her active grants.")
        .expect("the walk-through lists grants");
    let data_dir = std::env::temp_dir().join(format!("tb-readme-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let id_file = data_dir.with_extension("id");

    let server = start(port, &data_dir);
    let first = run(&format!(
        "set -euo pipefail\n{before}\necho \"$ID\" > '{}'",
        id_file.display()
    ));
    assert!(first.contains("\"status\":\"active\""), "{first}");
    drop(server);

    let _server = start(port, &data_dir);
    let id = std::fs::read_to_string(&id_file).unwrap().trim().to_owned();
    let second = run(&format!("set -euo pipefail\nID={id}\n{after}"));
    let lines: Vec<&str> = second.lines().collect();
    assert!(
        lines[0].contains(&id) && lines[0].contains("\"status\":\"active\""),
        "the restart lost the grant: {second}"
    );
    assert!(
        lines[1].contains("\"status\":\"ended\"")
            && lines[1].contains("\"end_reason\":\"revoked\""),
        "{second}"
    );
    assert!(lines[2].contains("\"kind\":\"deprovisioned\""), "{second}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
