//! Networks of a test's own: Linux network namespaces joined by veth pairs,
//! with nftables for NAT and firewalls and `tc` for slow links, so that a
//! client can sit behind a home router, an office firewall or a weak link
//! while the server runs unchanged.
//!
//! ```text
//!   client ns            router ns                          server ns
//!   10.77.1.2 ---- 10.77.1.1 | 203.0.113.254 ---- 203.0.113.10 (tandem serve)
//! ```
//!
//! The server's side uses a public-looking range (TEST-NET-3, RFC 5737):
//! a clinic's server has a public address, and Chromium refuses ICE-TCP to
//! a private address on a port below 1024, so a private one would hide
//! how media through port 443 behaves in the field. The addresses never
//! leave the test's namespaces.
//!
//! The router forwards between its two legs and can masquerade the
//! client's leg ([`Network::masquerade`]), firewall it
//! ([`Network::client_firewall`]) or shape what it sends to the client
//! ([`Network::shape_client_downlink`]). The server is a real `tandem
//! serve` process started inside the server namespace
//! ([`Network::exec_in`]); the test's own peers and HTTP client run on a
//! runtime whose threads live in the client (or router) namespace
//! ([`Network::runtime_in`]), so every socket they open is in there.
//!
//! Everything is created under names unique to the test and deleted when
//! the [`Network`] is dropped: no traffic leaves namespaces the test made.
//! Needs root; without it the tests say so and pass, unless
//! `REQUIRE_ROOT_TESTS=1` (CI).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
pub const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// One of the three namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Client,
    Router,
    Server,
}

/// A client, a router and a server, each in a namespace of its own.
pub struct Network {
    prefix: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Network {
    /// Builds the three namespaces and their links, or `None` when this
    /// process may not (not root, no `ip`/`nft`), which fails the test when
    /// `REQUIRE_ROOT_TESTS=1`.
    pub fn create(test: &str) -> Option<Network> {
        let prefix = format!(
            "td{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let network = Network { prefix };
        match network.build() {
            Ok(()) => Some(network),
            Err(problem) => {
                drop(network);
                let required = std::env::var("REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "REQUIRE_ROOT_TESTS=1 but {test} cannot make its network: {problem}"
                );
                eprintln!("SKIPPED {test}: it needs network namespaces (root, ip, nft): {problem}");
                None
            }
        }
    }

    pub fn name(&self, ns: Ns) -> String {
        let suffix = match ns {
            Ns::Client => "c",
            Ns::Router => "r",
            Ns::Server => "s",
        };
        format!("{}{suffix}", self.prefix)
    }

    fn build(&self) -> Result<(), String> {
        let (c, r, s) = (
            self.name(Ns::Client),
            self.name(Ns::Router),
            self.name(Ns::Server),
        );
        for ns in [&c, &r, &s] {
            run("ip", &["netns", "add", ns])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        // No IPv6 where the browser runs: a link-local address finishing its
        // duplicate detection a second after the link comes up is a network
        // change to Chromium, which then fails the page it was loading
        // (ERR_NETWORK_CHANGED). The tests' networks are IPv4 only anyway.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &c,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        // Interface names are per namespace; the pair is created inside the
        // router's, so no name ever exists in the host's.
        let legs = [
            (&c, "c0", "rc", CLIENT_IP, ROUTER_CLIENT_SIDE),
            (&s, "s0", "rs", SERVER_IP, ROUTER_SERVER_SIDE),
        ];
        for (ns, inner, outer, inner_ip, outer_ip) in legs {
            run(
                "ip",
                &[
                    "-n", &r, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns",
                    ns,
                ],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{inner_ip}/24"),
                    "dev",
                    inner,
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", inner, "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &outer_ip.to_string(),
                ],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &r,
                    "addr",
                    "add",
                    &format!("{outer_ip}/24"),
                    "dev",
                    outer,
                ],
            )?;
            run("ip", &["-n", &r, "link", "set", outer, "up"])?;
        }
        run(
            "ip",
            &[
                "netns",
                "exec",
                &r,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        Ok(())
    }

    /// The router rewrites the client's address to its own, as a home
    /// router does: the server never sees 10.77.1.2.
    pub fn masquerade(&self) {
        self.nft(
            Ns::Router,
            "table ip nat {
               chain postrouting {
                 type nat hook postrouting priority srcnat; policy accept;
                 oifname \"rs\" ip saddr 10.77.1.0/24 masquerade
               }
             }",
        );
    }

    /// The client's network gets address `ip` instead of its own, as when
    /// a phone moves from Wi-Fi to cellular: every socket bound to the old
    /// address is cut off at once.
    pub fn move_client(&self, ip: Ipv4Addr) {
        let c = self.name(Ns::Client);
        run("ip", &["-n", &c, "addr", "flush", "dev", "c0"]).expect("old address gone");
        run(
            "ip",
            &["-n", &c, "addr", "add", &format!("{ip}/24"), "dev", "c0"],
        )
        .expect("new address");
        run(
            "ip",
            &[
                "-n",
                &c,
                "route",
                "replace",
                "default",
                "via",
                &ROUTER_CLIENT_SIDE.to_string(),
            ],
        )
        .expect("default route");
    }

    /// Loads `rules` (an nftables ruleset) into the client's namespace.
    pub fn client_firewall(&self, rules: &str) {
        self.nft(Ns::Client, rules);
    }

    /// What the router sends to the client goes through a token bucket of
    /// `kbit` kbit/s, and `loss_percent` of it is dropped at random. (This
    /// machine's kernel has no netem, so no delay is added: the bucket's
    /// queue adds what delay there is.)
    pub fn shape_client_downlink(&self, kbit: u32, loss_percent: u32) {
        let r = self.name(Ns::Router);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &r,
                "tc",
                "qdisc",
                "replace",
                "dev",
                "rc",
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "16kb",
                "latency",
                "150ms",
            ],
        )
        .expect("tc tbf");
        self.nft(
            Ns::Router,
            &format!(
                "table ip loss {{
                   chain forward {{
                     type filter hook forward priority filter; policy accept;
                     oifname \"rc\" numgen random mod 100 < {loss_percent} drop
                   }}
                 }}"
            ),
        );
    }

    /// Takes the shaping of [`Network::shape_client_downlink`] away.
    pub fn unshape_client_downlink(&self) {
        let r = self.name(Ns::Router);
        let _ = run(
            "ip",
            &[
                "netns", "exec", &r, "tc", "qdisc", "del", "dev", "rc", "root",
            ],
        );
        let _ = run(
            "ip",
            &["netns", "exec", &r, "nft", "delete", "table", "ip", "loss"],
        );
    }

    fn nft(&self, ns: Ns, rules: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.nft");
        std::fs::write(&file, rules).unwrap();
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name(ns),
                "nft",
                "-f",
                file.to_str().unwrap(),
            ],
        )
        .expect("nft rules load");
    }

    /// `program` with `args` inside namespace `ns`.
    pub fn exec_in(&self, ns: Ns, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name(ns), program]);
        command
    }

    /// A multi-thread runtime whose threads (and so every socket opened on
    /// them) are in namespace `ns`. Drive it from a thread that is in `ns`
    /// too ([`Network::on_thread_in`]): `block_on` polls on the caller.
    pub fn runtime_in(&self, ns: Ns) -> tokio::runtime::Runtime {
        let path = format!("/run/netns/{}", self.name(ns));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || enter(&path))
            .build()
            .expect("a runtime")
    }

    /// Runs `body` on a new thread in namespace `ns` and returns what it
    /// returns (a panic included).
    pub fn on_thread_in<T: Send + 'static>(
        &self,
        ns: Ns,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.name(ns));
        let thread = std::thread::spawn(move || {
            enter(&path);
            body()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in [Ns::Client, Ns::Router, Ns::Server] {
            let _ = run("ip", &["netns", "del", &self.name(ns)]);
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns with a valid namespace descriptor affects only the
    // calling thread's network namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The server's address as a client sees it.
pub fn server_ip() -> IpAddr {
    IpAddr::V4(SERVER_IP)
}
