//! Web interface benchmark: the time to serve the home page (the timeline of a node that
//! follows 100 authors, 50 posts rendered) with `--records` posts in the store (default
//! 100,000), measured over loopback HTTP/1.1 on one kept-alive connection: from writing
//! the request to reading the whole page. That includes the loopback round trip, so it
//! is an upper bound of the server's time. Prints p50, p90, p99 and max.
//! Run with `scripts/bench-web`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kith_node::{
    config::{Config, WebSetting, DEFAULT_STORE_CACHE_MB},
    home::Home,
    ingest,
    store::Store,
    web::{self, Web},
    Node,
};
use kith_protocol::{Keypair, Record, RecordKind, VerifiedRecord};
use kith_tests::bench::{arg, signed_posts};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// Authors in the store; the node follows all of them.
const AUTHORS: usize = 100;

#[tokio::main]
async fn main() {
    let records: usize = arg("--records", 100_000);
    let requests: usize = arg("--requests", 2_000).max(1);
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.ensure_dir().unwrap();
    let me = home.create_identity().unwrap();
    let now = kith_tests::now_ms();

    let t = Instant::now();
    fill_store(&home, &me, records, now);
    println!(
        "store: {records} posts from {AUTHORS} authors, all followed ({:.1} s to build)",
        t.elapsed().as_secs_f64()
    );

    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: Vec::new(),
        mdns: false,
        name: Some("Bench".into()),
        relay: kith_node::net::RelayMode::Off,
        store_cache_mb: DEFAULT_STORE_CACHE_MB,
        web: WebSetting::At("127.0.0.1:0".parse().unwrap()),
        blobs: kith_node::config::BlobConfig::default(),
        dht_tags: true,
        limits: kith_node::net::ConnLimits::default(),
        mailbox: kith_node::config::MailboxConfig::default(),
    };
    let (node, tasks) = Node::start(&home, me, &config).await.unwrap();
    let listener = web::bind(config.web).await.unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let web = Web::new(node.clone(), addr);
    let login = web.login_url().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web.serve(listener, async move {
        let _ = stopped.await;
    }));

    let mut conn = Conn::open(&addr.to_string()).await;
    let path = login.split_once(&addr.to_string()).unwrap().1.to_owned();
    let (status, headers, _) = conn.get(&path, None).await;
    assert_eq!(status, 303, "sign-in");
    let cookie = headers
        .iter()
        .find_map(|(n, v)| (n == "set-cookie").then(|| v.split(';').next().unwrap().to_owned()))
        .unwrap();

    // Warm up (caches, first page), then measure.
    for _ in 0..20 {
        let (status, _, body) = conn.get("/", Some(&cookie)).await;
        assert_eq!(status, 200);
        assert!(body.matches("<article").count() == 50, "the home page shows 50 posts");
    }
    let mut times = Vec::with_capacity(requests);
    let started = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let (status, _, _) = conn.get("/", Some(&cookie)).await;
        times.push(t.elapsed());
        assert_eq!(status, 200);
    }
    let total = started.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "home page, {requests} requests: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0} pages/s)",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(times[times.len() - 1]),
        requests as f64 / total.as_secs_f64()
    );

    let _ = stop.send(());
    let _ = server.await;
    node.shutdown().await.unwrap();
    tasks.join().await;
}

/// `records` posts of [`AUTHORS`] authors, and the node's follow records for each
/// (imported: the store is filled as it would be after the follows).
fn fill_store(home: &Home, me: &Keypair, records: usize, now: u64) {
    let store = Store::open(&home.store_path()).unwrap();
    let posts = signed_posts(records, AUTHORS, now - 1000);
    for bytes in &posts {
        assert!(matches!(ingest::import(&store, bytes, now).unwrap(), ingest::Outcome::New(_)));
    }
    let mut prev: Option<VerifiedRecord> = None;
    for i in 0..AUTHORS {
        let target = Keypair::from_secret_bytes(&[i as u8; 32]).id();
        let record = Record {
            author: me.id(),
            seq: i as u64 + 1,
            prev: prev.as_ref().map(VerifiedRecord::id),
            timestamp: now - 1000 + i as u64,
            kind: RecordKind::Follow { target },
        }
        .sign(me)
        .unwrap();
        assert!(matches!(
            ingest::import(&store, record.bytes(), now).unwrap(),
            ingest::Outcome::New(_)
        ));
        prev = Some(record);
    }
    store.flush_blocking().unwrap();
}

/// One kept-alive HTTP/1.1 connection.
struct Conn {
    host: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { host: addr.to_owned(), reader: BufReader::new(stream) }
    }

    /// GET `path`: status, headers (lower-case names) and body.
    async fn get(
        &mut self,
        path: &str,
        cookie: Option<&str>,
    ) -> (u16, Vec<(String, String)>, String) {
        let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{cookie}\r\n", self.host);
        self.reader.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find_map(|(n, v)| (n == "content-length").then(|| v.parse().unwrap()))
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).await.unwrap();
        (status, headers, String::from_utf8(body).unwrap())
    }
}
