//! The video SFU side by side with Janus's VideoRoom plugin (Debian's `janus`): synthetic rooms
//! of 2 and 3 participants, each publishing VP8 (110 packets/s of 1,100 bytes, about 1 Mbit/s
//! on the wire) and Opus (50 packets/s of 160 bytes), N rooms at once. Printed, not asserted.
//!
//! Method (the same for both servers):
//! - The server runs in a process of its own: ours is this binary started again as a child
//!   (`SFU_BENCH_ROLE=hub`) that runs `Hub::start()` (the video component on a fresh database) on
//!   a one-worker tokio runtime; Janus is started from `bench/janus/run.sh`. The participants
//!   (webrtc-rs `rtc` peer connections) all run in this process, so their CPU is never counted
//!   as the server's.
//! - After every participant receives media and a warm-up, a measuring window: the server's
//!   CPU time is the change of utime+stime in `/proc/<pid>/stat` (all its threads), and the
//!   forwarded packets are the SFU's `rtp_forwarded` counter for ours and the RTP packets the
//!   subscribers received for Janus (it has no counter; our delivered count is printed too).
//!   Figures: forwarded packets/s, CPU µs per forwarded packet, forwarded packets per CPU-second
//!   ("per core": the rate one fully busy core would sustain at that cost), one-way latency
//!   p50/p99 from the send time stamped in each payload to its arrival at a subscriber (both
//!   ends in this process), and memory per room: the server's RSS with everyone connected minus
//!   its RSS before anyone joined, divided by the rooms.
//! - The whole machine's busy share over the window is printed too (`/proc/stat`): the 2 cores
//!   also run the participants and whatever else is on the machine; and the datagrams the
//!   kernel dropped for a full receive buffer (`/proc/net/udp`'s `drops`) at the server's
//!   sockets and at the others on the same address.
//!
//! Figures and their reading: docs/benchmarks.md, "Video SFU".
//!
//! Run with the local services up:
//! `eval "$(deploy/services.sh env)"; cargo bench -p video --bench sfu`
//! `SFU_BENCH_ROOMS` (default `10,25,50`), `SFU_BENCH_SIZES` (`2,3`), `SFU_BENCH_SECONDS` (15),
//! `SFU_BENCH_TARGETS` (`ours,rec,janus`) narrow it down. `rec` is ours with every room
//! recorded (the customer consents): the SFU also feeds each room's voices and the customer's
//! camera to the recording spool, whose writer thread is in the measured process.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "sfu/janus.rs"]
mod janus;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use support::{Publish, TestPeer, agent_join, customer_join, customer_join_consenting};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const VIDEO_PPS: u32 = 110;
const AUDIO_PPS: u32 = 50;
const WARMUP: Duration = Duration::from_secs(3);
/// Rooms of ours joining at once (each participant waits at most 10 s for its `joined` frame,
/// `TestPeer::join`). Two keeps few joins queued at the hub while the rooms already up
/// forward; on a saturated machine it was not enough (run 6 of docs/benchmarks.md).
const JOINING_ROOMS: usize = 2;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_owned()).collect()
}

fn main() {
    if std::env::var("SFU_BENCH_ROLE").as_deref() == Ok("hub") {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(hub_process());
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(driver());
}

// ---------------------------------------------------------------------------------------------
// The measured process of our SFU

/// The child process: the video component, rooms on request, counters on request.
async fn hub_process() {
    let hub = support::Hub::start().await;
    let account: uuid::Uuid = sqlx::query_scalar("SELECT account_id FROM interactions WHERE id = $1")
        .bind(hub.interaction)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    println!("{}", json!({"http": hub.http.to_string(), "udp_port": hub.video.udp_addr().port()}));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut made = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("rooms") => {
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                let record = words.next() == Some("record");
                let mut rooms = Vec::new();
                for _ in 0..n {
                    made += 1;
                    let interaction = interaction(&hub.pool, account, made).await;
                    let (status, body) = hub.start_room(json!({"interaction_id": interaction, "record": record})).await;
                    assert_eq!(status, 201, "{body}");
                    let link = body["customer_link"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
                    rooms.push(json!({"room": body["room_id"], "link": link}));
                }
                println!("{}", json!({"rooms": rooms}));
            }
            Some("stat") => {
                let c = &hub.video.sfu().counters;
                let spool = &hub.video.recorder().spool().counters;
                println!(
                    "{}",
                    json!({
                        "forwarded": c.rtp_forwarded.load(Ordering::Relaxed),
                        "datagrams_in": c.datagrams_in.load(Ordering::Relaxed),
                        "datagrams_out": c.datagrams_out.load(Ordering::Relaxed),
                        "dropped": c.datagrams_dropped.load(Ordering::Relaxed),
                        "spooled": spool.packets.load(Ordering::Relaxed),
                        "spooled_bytes": spool.bytes.load(Ordering::Relaxed),
                        "spool_dropped": spool.dropped.load(Ordering::Relaxed),
                        "recording": hub.video.recorder().active_count(),
                    })
                );
            }
            _ => break,
        }
    }
}

/// Another web chat interaction of the hub's account, assigned to alice.
async fn interaction(pool: &sqlx::PgPool, account: uuid::Uuid, n: usize) -> uuid::Uuid {
    let customer = format!("bench-{n}");
    testenv::fixtures::assigned_interaction(pool, account, &customer, &format!("Customer {n}"), "video?", "alice").await
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads, live and exited), in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (busy, total) jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Datagrams the kernel dropped (receive buffer full) at UDP sockets bound to `ip`, split into
/// those for which `server` holds (by port) and the others: /proc/net/udp's `drops` column.
fn udp_drops(ip: std::net::IpAddr, server: &dyn Fn(u16) -> bool) -> (u64, u64) {
    udp_drops_in("/proc/net/udp", ip, server)
}

/// [`udp_drops`] from a given table: `/proc/<pid>/net/udp` is the table of that process's
/// network namespace.
fn udp_drops_in(table: &str, ip: std::net::IpAddr, server: &dyn Fn(u16) -> bool) -> (u64, u64) {
    let table = std::fs::read_to_string(table).unwrap_or_default();
    let (mut at_server, mut elsewhere) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (f.get(1), f.get(12)) else { continue };
        let Some((addr, port)) = local.split_once(':') else { continue };
        let (Ok(addr), Ok(port), Ok(drops)) =
            (u32::from_str_radix(addr, 16), u16::from_str_radix(port, 16), drops.parse::<u64>())
        else {
            continue;
        };
        if std::net::IpAddr::from(addr.to_le_bytes()) != ip {
            continue;
        }
        if server(port) {
            at_server += drops;
        } else {
            elsewhere += drops;
        }
    }
    (at_server, elsewhere)
}

struct Probe {
    at: Instant,
    drops: (u64, u64),
    server_cpu: f64,
    own_cpu: f64,
    machine: (u64, u64),
    forwarded: u64,
    delivered: u64,
}

fn probe(server_pid: &str, forwarded: u64, delivered: u64, drops: (u64, u64)) -> Probe {
    Probe {
        at: Instant::now(),
        drops,
        server_cpu: cpu_seconds(server_pid),
        own_cpu: cpu_seconds("self"),
        machine: machine_jiffies(),
        forwarded,
        delivered,
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

struct Row {
    server: &'static str,
    size: usize,
    rooms: usize,
    connected: String,
    offered_pps: f64,
    forwarded_pps: f64,
    delivered_pps: f64,
    server_cores: f64,
    us_per_packet: f64,
    per_core: f64,
    p50_ms: f64,
    p99_ms: f64,
    kib_per_room: f64,
    peers_cores: f64,
    machine_busy: f64,
    server_drops: f64,
    client_drops: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
fn row(
    server: &'static str,
    size: usize,
    rooms: usize,
    connected: String,
    a: &Probe,
    b: &Probe,
    mut latencies: Vec<u64>,
    rss_delta_kib: f64,
) -> Row {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let cpu = b.server_cpu - a.server_cpu;
    let forwarded = (b.forwarded - a.forwarded) as f64;
    let delivered = (b.delivered - a.delivered) as f64;
    latencies.sort_unstable();
    let (busy, total) = (b.machine.0 - a.machine.0, b.machine.1 - a.machine.1);
    Row {
        server,
        size,
        rooms,
        connected,
        offered_pps: (rooms * size * (size - 1)) as f64 * f64::from(VIDEO_PPS + AUDIO_PPS),
        forwarded_pps: forwarded / wall,
        delivered_pps: delivered / wall,
        server_cores: cpu / wall,
        us_per_packet: cpu * 1e6 / forwarded.max(1.0),
        per_core: forwarded / cpu.max(1e-9),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        kib_per_room: rss_delta_kib / rooms as f64,
        peers_cores: (b.own_cpu - a.own_cpu) / wall,
        machine_busy: 100.0 * busy as f64 / total.max(1) as f64,
        server_drops: b.drops.0.saturating_sub(a.drops.0) as f64 / wall,
        client_drops: b.drops.1.saturating_sub(a.drops.1) as f64 / wall,
    }
}

fn header() {
    println!(
        "| server | participants | rooms | connected | offered pkt/s | forwarded pkt/s | delivered pkt/s | server CPU (cores) | CPU µs/pkt | pkt/s per core | latency p50 | p99 | RSS per room | peers' CPU (cores) | machine busy | drops/s at server socket(s) | drops/s at clients' sockets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn print_row(r: &Row) {
    println!(
        "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} | {:.2} ms | {:.2} ms | {:.0} KiB | {:.2} | {:.0}% | {:.0} | {:.0} |",
        r.server,
        r.size,
        r.rooms,
        r.connected,
        r.offered_pps,
        r.forwarded_pps,
        r.delivered_pps,
        r.server_cores,
        r.us_per_packet,
        r.per_core,
        r.p50_ms,
        r.p99_ms,
        r.kib_per_room,
        r.peers_cores,
        r.machine_busy,
        r.server_drops,
        r.client_drops
    );
}

// ---------------------------------------------------------------------------------------------
// The driver

async fn driver() {
    let rooms: Vec<usize> = env_list("SFU_BENCH_ROOMS", "10,25,50").iter().filter_map(|s| s.parse().ok()).collect();
    let sizes: Vec<usize> = env_list("SFU_BENCH_SIZES", "2,3").iter().filter_map(|s| s.parse().ok()).collect();
    let targets = env_list("SFU_BENCH_TARGETS", "ours,rec,janus");
    let seconds: u64 = std::env::var("SFU_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let window = Duration::from_secs(seconds);
    println!(
        "video SFU benchmark: VP8 {VIDEO_PPS} pkt/s x 1,100 B + Opus {AUDIO_PPS} pkt/s x 160 B per publisher; \
         warm-up {WARMUP:?}, window {window:?}; {} cores; net.core.rmem_default = {} bytes",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/sys/net/core/rmem_default").unwrap_or_default().trim()
    );
    let mut rows = Vec::new();
    let mut port = 18088u16;
    // Janus runs in a network namespace of this run (created at its first scenario, deleted at
    // the end)
    let mut netns: Option<janus::Netns> = None;
    for &size in &sizes {
        for &n in &rooms {
            for target in &targets {
                let result = match target.as_str() {
                    "ours" => ours(size, n, window, false).await,
                    "rec" => ours(size, n, window, true).await,
                    "janus" => {
                        port += 1;
                        if netns.is_none() {
                            match janus::Netns::create() {
                                Ok(ns) => {
                                    println!(
                                        "network namespace {} for Janus: {} (host) <-> {} (Janus)",
                                        ns.name, ns.host_ip, ns.ns_ip
                                    );
                                    netns = Some(ns);
                                }
                                Err(e) => println!("no network namespace for Janus: {e:#}"),
                            }
                        }
                        match &netns {
                            Some(ns) => janus_run(size, n, window, port, ns).await,
                            None => Err(anyhow!("Janus needs a network namespace of this run (root)")),
                        }
                    }
                    other => Err(anyhow!("unknown target {other}")),
                };
                match result {
                    Ok(r) => {
                        header();
                        print_row(&r);
                        rows.push(r);
                    }
                    Err(e) => println!("{target}, {size} participants x {n} rooms: FAILED: {e:#}"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    drop(netns);
    println!("\nAll runs:\n");
    header();
    for r in &rows {
        print_row(r);
    }
}

/// Reads the signalling sockets (answers the hub's pings) while `d` passes.
async fn pump_for(peers: &mut [TestPeer], d: Duration) {
    let end = Instant::now() + d;
    loop {
        for p in peers.iter_mut() {
            while let Some(Some(_)) = p.ws.next().now_or_never() {}
        }
        if Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200).min(end - Instant::now())).await;
    }
}

fn received_media(p: &TestPeer) -> u64 {
    (3..9).map(|m| p.received.rtp[m].load(Ordering::Relaxed)).sum()
}

async fn ours(size: usize, n: usize, window: Duration, record: bool) -> anyhow::Result<Row> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .env("SFU_BENCH_ROLE", "hub")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("hub pid")?.to_string();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read = async || -> anyhow::Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("the hub process did not answer")??
            .context("the hub process ended")?;
        Ok(serde_json::from_str(&line)?)
    };
    let hello = read().await?;
    let http = hello["http"].as_str().context("no http address")?.to_owned();
    let sfu_port = hello["udp_port"].as_u64().context("no udp port")? as u16;
    let loopback: std::net::IpAddr = "127.0.0.1".parse()?;
    let drops = || udp_drops(loopback, &|port| port == sfu_port);
    stdin.write_all(format!("rooms {n}{}\n", if record { " record" } else { "" }).as_bytes()).await?;
    let rooms = read().await?;
    let rooms: Vec<(uuid::Uuid, String)> = rooms["rooms"]
        .as_array()
        .context("no rooms")?
        .iter()
        .map(|r| (r["room"].as_str().unwrap().parse().unwrap(), r["link"].as_str().unwrap().to_owned()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(&pid);

    let publish = Publish { video_pps: VIDEO_PPS, video_pt: 96, audio_pps: AUDIO_PPS, media: None };
    let url = format!("ws://{http}/api/v1/video/ws");
    // each room joins in a task of its own: TestPeer::join panics when the hub does not answer
    let joins = rooms.into_iter().map(|(room, link)| {
        let url = url.clone();
        tokio::spawn(async move {
            let socket = async || tokio_tungstenite::connect_async(&url).await.map(|(ws, _)| ws);
            let mut peers = vec![
                TestPeer::join(socket().await?, agent_join(room, "alice", &["agent"]), publish).await,
                TestPeer::join(
                    socket().await?,
                    if record { customer_join_consenting(&link, true) } else { customer_join(&link) },
                    publish,
                )
                .await,
            ];
            if size == 3 {
                peers.push(TestPeer::join(socket().await?, agent_join(room, "sue", &["supervisor"]), publish).await);
            }
            anyhow::Ok(peers)
        })
    });
    let mut peers: Vec<TestPeer> = Vec::new();
    let mut joined = futures::stream::iter(joins).buffer_unordered(JOINING_ROOMS);
    let mut failure = None;
    while let Some(room) = joined.next().await {
        match room.map_err(|e| anyhow!("joining panicked: {e}")).and_then(|r| r) {
            Ok(room) => peers.extend(room),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    drop(joined);
    if let Some(e) = failure {
        let rate = stat_line(&mut stdin, &mut read).await;
        for p in &peers {
            p.stop_media();
        }
        bail!("{e:#}; {} of {} participants joined; SFU counters then: {rate}", peers.len(), n * size);
    }
    let expected = (size - 1) as u64 * 40;
    let deadline = Instant::now() + Duration::from_secs(60);
    while peers.iter().any(|p| received_media(p) < expected) && Instant::now() < deadline {
        pump_for(&mut peers, Duration::from_millis(500)).await;
    }
    let ok = peers.iter().filter(|p| received_media(p) >= expected).count();
    let connected = format!("{ok}/{}", peers.len());
    pump_for(&mut peers, WARMUP).await;

    let mut stat = async || -> anyhow::Result<Value> {
        stdin.write_all(b"stat\n").await?;
        read().await
    };
    let forwarded = |v: &Value| v["forwarded"].as_u64().unwrap_or(0);
    let delivered = |peers: &[TestPeer]| peers.iter().map(received_media).sum::<u64>();
    for p in &peers {
        p.received.latencies_us.lock().unwrap().clear();
    }
    let before = stat().await?;
    let a = probe(&pid, forwarded(&before), delivered(&peers), drops());
    pump_for(&mut peers, window).await;
    let after = stat().await?;
    let b = probe(&pid, forwarded(&after), delivered(&peers), drops());
    let rate = |k: &str| {
        (after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0)) as f64
            / b.at.duration_since(a.at).as_secs_f64()
    };
    let name = if record { "rec" } else { "ours" };
    println!(
        "{name}, {size} x {n}: SFU datagrams in {:.0}/s, out {:.0}/s, send failures {:.0}/s; recordings {}, \
         spooled {:.0} packets/s ({:.0} kB/s), spool drops {:.0}/s",
        rate("datagrams_in"),
        rate("datagrams_out"),
        rate("dropped"),
        after["recording"],
        rate("spooled"),
        rate("spooled_bytes") / 1000.0,
        rate("spool_dropped")
    );
    let rss_after = rss_kib(&pid);
    let latencies: Vec<u64> =
        peers.iter().flat_map(|p| std::mem::take(&mut *p.received.latencies_us.lock().unwrap())).collect();
    let r = row(name, size, n, connected, &a, &b, latencies, rss_after.saturating_sub(rss_before) as f64);

    for p in &peers {
        p.stop_media();
    }
    for p in peers {
        let _ = p.task.await;
    }
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Ok(r)
}

/// The hub's counters, for a failure message.
async fn stat_line(
    stdin: &mut tokio::process::ChildStdin,
    read: &mut impl AsyncFnMut() -> anyhow::Result<Value>,
) -> String {
    if stdin.write_all(b"stat\n").await.is_err() {
        return "unavailable".into();
    }
    read().await.map(|v| v.to_string()).unwrap_or_else(|e| e.to_string())
}

async fn janus_run(size: usize, n: usize, window: Duration, port: u16, netns: &janus::Netns) -> anyhow::Result<Row> {
    let base = 20000 + (port - 18088) * 1000 % 10000;
    let server = janus::Janus::start(netns, port, &format!("{base}-{}", base + 999)).await?;
    let pid = server.pid.to_string();
    let api = server.api.clone();
    // drops at Janus's sockets (in the namespace) and at the participants' (on the host's end)
    let janus_table = format!("/proc/{pid}/net/udp");
    let (ns_ip, ip) = (server.media_ip, netns.host_ip);
    let drops =
        || (udp_drops_in(&janus_table, ns_ip, &|p| (base..base + 1000).contains(&p)).0, udp_drops(ip, &|_| false).1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(&pid);

    let rooms = (0..n).map(|i| {
        let api = api.clone();
        async move {
            let room = 1000 + i as u64;
            janus::create_room(&api, room, size).await?;
            let mut members = Vec::new();
            for j in 0..size {
                members
                    .push(janus::Participant::publish(&api, ip, room, &format!("p{j}"), VIDEO_PPS, AUDIO_PPS).await?);
            }
            // a feed exists for subscribers once its publisher's connection is up
            let deadline = Instant::now() + Duration::from_secs(30);
            while !members.iter().all(|m| m.stats.publisher_connected.load(Ordering::Relaxed)) {
                if Instant::now() > deadline {
                    bail!("room {room}: publishers not connected within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let feeds: Vec<u64> = members.iter().map(|m| m.feed).collect();
            for m in &mut members {
                let others: Vec<u64> = feeds.iter().copied().filter(|f| *f != m.feed).collect();
                let mut tries = 0;
                while let Err(e) = m.subscribe(ip, room, &others).await {
                    tries += 1;
                    if tries == 20 {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            anyhow::Ok(members)
        }
    });
    let mut members = Vec::new();
    let mut joined = futures::stream::iter(rooms).buffer_unordered(8);
    let mut failure = None;
    while let Some(room) = joined.next().await {
        match room {
            Ok(m) => members.extend(m),
            Err(e) => failure = Some(e),
        }
    }
    drop(joined);
    if let Some(e) = failure {
        for m in members {
            m.stop().await;
        }
        let log = server.log.clone();
        server.stop().await;
        bail!("{e:#} (Janus log: {})", log.display());
    }
    let expected = (size - 1) as u64 * 40;
    let got = |m: &janus::Participant| m.stats.rtp_received.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while members.iter().any(|m| got(m) < expected) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ok = members.iter().filter(|m| got(m) >= expected).count();
    let connected = format!("{ok}/{}", members.len());
    if ok == 0 {
        let pubs = members.iter().filter(|m| m.stats.publisher_connected.load(Ordering::Relaxed)).count();
        let subs = members.iter().filter(|m| m.stats.subscriber_connected.load(Ordering::Relaxed)).count();
        for m in members {
            m.stop().await;
        }
        let log = server.log.clone();
        server.stop().await;
        bail!(
            "no participant received media within 60 s ({pubs} publishers and {subs} subscribers connected; Janus log: {})",
            log.display()
        );
    }
    tokio::time::sleep(WARMUP).await;
    let delivered = |members: &[janus::Participant]| members.iter().map(got).sum::<u64>();
    for m in &members {
        m.stats.latencies_us.lock().unwrap().clear();
    }
    let a = probe(&pid, delivered(&members), delivered(&members), drops());
    tokio::time::sleep(window).await;
    let b = probe(&pid, delivered(&members), delivered(&members), drops());
    let rss_after = rss_kib(&pid);
    let latencies: Vec<u64> =
        members.iter().flat_map(|m| std::mem::take(&mut *m.stats.latencies_us.lock().unwrap())).collect();
    let r = row("janus", size, n, connected, &a, &b, latencies, rss_after.saturating_sub(rss_before) as f64);
    for m in members {
        m.stop().await;
    }
    server.stop().await;
    Ok(r)
}
