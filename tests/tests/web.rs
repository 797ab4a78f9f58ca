//! The web interface of real `kith daemon` processes: its security checks over raw HTTP,
//! then a real browser (headless Chromium driven by Selenium, `tests/web/browser.py`)
//! using the pages as a person would, which also takes the screenshots in the folder
//! `KITH_SCREENSHOTS` names (`scripts/test.sh` sets it to `docs/screenshots` in CI, or
//! when asked with `--screenshots`).
//!
//! The browser test needs Debian's `chromium`, `chromium-driver` and `python3-selenium`
//! (`.ci/run` installs them). Without them it fails when `CI` is set and is skipped (with
//! a note) otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::Duration,
};

use kith_tests::cli::{befriend, eventually, Daemon};

const DEADLINE: Duration = Duration::from_secs(30);
/// The variable naming the folder (relative to the repository) for the browser test's
/// screenshots; none are taken without it.
const SCREENSHOTS: &str = "KITH_SCREENSHOTS";

/// A daemon on loopback with its web interface on a port the OS picks.
fn daemon(name: &str) -> Daemon {
    let args = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--web", "127.0.0.1:0"];
    Daemon::start_with(name, &[], &args)
}

/// An HTTP reply: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `addr` (`127.0.0.1:PORT`) with `headers` as given (Host
/// included), over a fresh connection.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer (and close) before it reads a body it refuses.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

/// `kith web` of `d`: the address (`127.0.0.1:PORT`) and the sign-in path with token.
fn sign_in_url(d: &Daemon) -> (String, String) {
    let url = d.json(&["web"])["url"].as_str().unwrap().to_owned();
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    (addr.to_owned(), format!("/{path}"))
}

fn feed_has(d: &Daemon, text: &str) -> bool {
    d.lines(&["feed", "--limit", "100"]).iter().any(|i| i["text"] == text)
}

#[test]
fn security_checks_over_http() {
    let alice = daemon("alice");
    let (addr, login) = sign_in_url(&alice);
    let host = addr.as_str();
    let origin = format!("http://{addr}");

    // No session: refused, and told how to sign in. A made-up token: refused.
    let r = http(&addr, "GET", "/", &[("Host", host)], b"");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("kith web"), "{}", r.body);
    let r =
        http(&addr, "GET", &format!("/login?token={}", "ab".repeat(32)), &[("Host", host)], b"");
    assert_eq!(r.status, 401);

    // A foreign Host is refused even with a valid token: it must not be used up.
    let r =
        http(&addr, "GET", &login, &[("Host", &format!("attacker.example:{}", port(&addr)))], b"");
    assert_eq!(r.status, 421);
    assert!(r.header("set-cookie").is_none());

    // The token becomes an HttpOnly, SameSite=Strict cookie, once.
    let r = http(&addr, "GET", &login, &[("Host", host)], b"");
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/"));
    let set_cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(http(&addr, "GET", &login, &[("Host", host)], b"").status, 401, "token reused");

    // With the cookie: the page, with a strict CSP and no CORS.
    let signed_in = [("Host", host), ("Cookie", cookie.as_str())];
    let r = http(&addr, "GET", "/", &signed_in, b"");
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(r.headers.iter().all(|(n, _)| !n.starts_with("access-control-")));
    assert!(!r.body.contains("<script>"), "inline script in the page");
    let csrf = r.body.split("name=\"csrf\" value=\"").nth(1).unwrap()[..64].to_owned();
    // ...but not under another Host, cookie or not.
    let r = http(
        &addr,
        "GET",
        "/",
        &[("Host", "localhost.attacker.example"), ("Cookie", &cookie)],
        b"",
    );
    assert_eq!(r.status, 421);
    let r =
        http(&addr, "OPTIONS", "/post", &[("Host", host), ("Origin", "http://evil.example")], b"");
    assert!(r.headers.iter().all(|(n, _)| !n.starts_with("access-control-")));

    // State changes: the right Origin and CSRF token, both, or refused.
    let post = |origin: Option<&str>, csrf: &str, text: &str| {
        let body = format!("csrf={csrf}&text={text}");
        let mut headers = vec![
            ("Host", host),
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        http(&addr, "POST", "/post", &headers, body.as_bytes())
    };
    assert_eq!(post(Some("http://evil.example"), &csrf, "evil+origin").status, 403);
    assert_eq!(post(Some("null"), &csrf, "null+origin").status, 403);
    assert_eq!(post(None, &csrf, "no+origin").status, 403);
    assert_eq!(post(Some(&origin), &"0".repeat(64), "bad+csrf").status, 403);
    assert_eq!(post(Some(&origin), "", "no+csrf").status, 403);
    let r = post(Some(&origin), &csrf, &"x".repeat(70 * 1024));
    assert_eq!(r.status, 413, "an oversized body");
    let r = post(Some(&origin), &csrf, "from+the+web+%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(feed_has(&alice, "from the web <script>alert(1)</script>"));
    for text in ["evil origin", "null origin", "no origin", "bad csrf", "no csrf"] {
        assert!(!feed_has(&alice, text), "{text} was posted");
    }
    // The hostile text comes back escaped.
    let r = http(&addr, "GET", "/", &signed_in, b"");
    assert!(
        r.body.contains("from the web &#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        r.body
    );

    // The other state changes refuse a wrong CSRF token as well, and change nothing.
    let form = [
        ("Host", host),
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let me = alice.id();
    for (path, fields) in [
        ("/profile", "name=evil&bio=evil".to_owned()),
        ("/name", format!("id={me}&petname=evil")),
        ("/add", "link=kith%3A%2F%2Finvite%2Fx".to_owned()),
        ("/follow", format!("id={me}&action=follow")),
    ] {
        let body = format!("csrf={}&{fields}", "0".repeat(64));
        assert_eq!(http(&addr, "POST", path, &form, body.as_bytes()).status, 403, "{path}");
    }
    assert_eq!(alice.json(&["profile", "show"])["name"], "alice");
    assert!(alice.lines(&["names"]).is_empty());

    // The people, node and settings pages; the invite's QR code as SVG and PNG, bounded.
    let r = http(&addr, "GET", "/people", &signed_in, b"");
    assert_eq!(r.status, 200);
    let textarea = r.body.split("id=\"invite-link\"").nth(1).unwrap();
    let link = textarea.split(">kith://invite/").nth(1).unwrap().split('<').next().unwrap();
    assert!(link.len() > 40, "{link}");
    let qr = format!("/qr.svg?text=kith%3A%2F%2Finvite%2F{link}");
    assert!(r.body.contains(&qr.replace('&', "&#38;")), "no QR code of the link");
    let r = http(&addr, "GET", &qr, &signed_in, b"");
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/svg+xml")));
    assert!(r.body.contains("<svg") && !r.body.contains("<script"), "{}", r.body);
    let r = http(&addr, "GET", &qr.replace(".svg", ".png"), &signed_in, b"");
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/png")));
    let r = http(&addr, "GET", &format!("/qr.svg?text={}", "a".repeat(2000)), &signed_in, b"");
    assert_eq!(r.status, 400);
    assert_eq!(http(&addr, "GET", &qr, &[("Host", host)], b"").status, 401);
    let r = http(&addr, "GET", "/node", &signed_in, b"");
    assert!(r.status == 200 && r.body.contains("on disk"), "{}", r.body);
    let r = http(&addr, "GET", "/settings", &signed_in, b"");
    assert!(r.status == 200 && r.body.contains("value=\"alice\""), "{}", r.body);
    let body = format!("csrf={csrf}&name=alice&bio=%3Cscript%3Ebio%3C%2Fscript%3E");
    let r = http(&addr, "POST", "/profile", &form, body.as_bytes());
    assert_eq!((r.status, r.header("location")), (303, Some("/settings?saved=1")));
    assert_eq!(alice.json(&["profile", "show"])["bio"], "<script>bio</script>");
    let r = http(&addr, "GET", &format!("/person/{me}"), &signed_in, b"");
    assert!(r.body.contains("&#60;script&#62;bio"), "{}", r.body);

    // Signing out ends the session.
    let out = [
        ("Host", host),
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("X-Kith-Csrf", csrf.as_str()),
    ];
    assert_eq!(http(&addr, "POST", "/logout", &out, b"").status, 200);
    assert_eq!(http(&addr, "GET", "/", &signed_in, b"").status, 401);
}

/// A signed-in browser session over raw HTTP: the address, the cookie and the CSRF token.
struct Signed {
    addr: String,
    cookie: String,
    csrf: String,
}

impl Signed {
    fn new(d: &Daemon) -> Self {
        let (addr, login) = sign_in_url(d);
        let r = http(&addr, "GET", &login, &[("Host", &addr)], b"");
        let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        let r = http(&addr, "GET", "/settings", &[("Host", &addr), ("Cookie", &cookie)], b"");
        let csrf = r.body.split("name=\"csrf\" value=\"").nth(1).unwrap()[..64].to_owned();
        Self { addr, cookie, csrf }
    }

    fn get(&self, path: &str) -> Reply {
        http(&self.addr, "GET", path, &[("Host", &self.addr), ("Cookie", &self.cookie)], b"")
    }

    /// Posts a form (the CSRF token added).
    fn post(&self, path: &str, fields: &str) -> Reply {
        let origin = format!("http://{}", self.addr);
        let headers = [
            ("Host", self.addr.as_str()),
            ("Cookie", self.cookie.as_str()),
            ("Origin", origin.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let body = format!("csrf={}&{fields}", self.csrf);
        http(&self.addr, "POST", path, &headers, body.as_bytes())
    }
}

/// The node's settings on the settings page: a change applies to the running daemon at
/// once, is saved to config.toml with the person's own lines kept, and is there after a
/// restart; bad values are refused on the page, naming the value, and change nothing.
#[test]
fn node_settings_change_live_and_survive_a_restart() {
    let mut alice = daemon("alice");
    let config = alice.home().join("config.toml");
    std::fs::write(&config, "# alice's node: keep this line\nmdns = false # quiet LAN\n").unwrap();
    let quota = |d: &Daemon| d.json(&["status"])["blobs"]["quota"].as_u64().unwrap();
    assert_eq!(quota(&alice), 1024 << 20);
    let web = Signed::new(&alice);
    let page = web.get("/settings");
    assert!(
        page.body.contains("id=\"set-blob_quota_mb\" name=\"blob_quota_mb\" value=\"1024\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<code>listen</code>"), "restart-only values shown");
    let now = format!("&#34;127.0.0.1:0&#34;, now &#34;{}&#34;", web.addr);
    assert!(page.body.contains(&now), "the web interface's address now: {}", page.body);
    let form = |quota: &str| {
        format!(
            "max_blob_mb=25&blob_quota_mb={quota}&thumbnail_budget_mb=64&blob_upload_kib_s=0\
             &max_inbound=160&max_outbound=96&max_conns_per_ip=16&max_conns_per_subnet=48"
        )
    };
    for (bad, says) in [("0", "out of range"), ("lots", "not a whole number"), ("", "a number")] {
        let r = web.post("/settings/node", &form(bad));
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        let error = r.body.split("id=\"node-error\">").nth(1).unwrap();
        assert!(error.starts_with("Disk space for pictures and files: ") && error.contains(says));
    }
    assert_eq!(quota(&alice), 1024 << 20);
    let r = web.post("/settings/node", &form("300"));
    assert_eq!((r.status, r.header("location")), (303, Some("/settings?node_saved=1#node-title")));
    assert_eq!(quota(&alice), 300 << 20, "applied at once");
    assert!(web.get("/settings?node_saved=1").body.contains("value=\"300\""));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.starts_with("# alice's node: keep this line\nmdns = false # quiet LAN\n"),
        "{saved}"
    );
    assert!(saved.contains("blob_quota_mb = 300\n") && saved.contains("dht_tags = false\n"));

    alice.restart();
    assert_eq!(quota(&alice), 300 << 20, "kept after a restart");
    let page = Signed::new(&alice).get("/settings");
    assert!(page.body.contains("name=\"blob_quota_mb\" value=\"300\""), "{}", page.body);
    assert!(!page.body.contains("id=\"set-dht_tags\" name=\"dht_tags\" checked"));
}

/// Look-alike names on the pages, as in the CLI: a name like another known person's
/// (a Cyrillic А, a zero-width space) is marked on the timeline and the person's page,
/// always beside its own id tail, and invisible characters are shown, never sent raw.
#[test]
fn lookalike_names_are_marked_on_pages() {
    let carol = daemon("carol");
    let people =
        [Daemon::start("Alice"), Daemon::start("\u{410}lice"), Daemon::start("Ali\u{200B}ce")];
    let ids: Vec<String> = people.iter().map(Daemon::id).collect();
    for d in &people {
        assert_eq!(carol.json(&["dial", &d.addr()])["ok"], true);
        assert_eq!(carol.json(&["follow", &d.id()])["ok"], true);
        d.json(&["post", "hi, it's alice"]);
    }
    eventually(DEADLINE, "carol to have three posts and three profiles", || {
        let named = ids.iter().all(|id| carol.json(&["profile", "show", id])["name"].is_string());
        let posts = carol.lines(&["feed", "-n", "50"]).len() == 3;
        (named && posts).then_some(())
    });
    let web = Signed::new(&carol);
    let home = web.get("/").body;
    assert_eq!(home.matches("look-alike name</span>").count(), 3, "{home}");
    for id in &ids {
        assert!(home.contains(&format!("…{}</span>", &id[id.len() - 6..])), "{id}: {home}");
    }
    assert!(home.contains("U+200B") && !home.contains('\u{200B}'), "{home}");
    let page = web.get(&format!("/person/{}", ids[1])).body;
    assert!(page.contains("look-alike name</span>"), "{page}");
    // A petname is never marked (it is yours); the others stay marked.
    assert_eq!(carol.json(&["name", &ids[0], "alice-real"])["ok"], true);
    let home = web.get("/").body;
    assert_eq!(home.matches("look-alike name</span>").count(), 2, "{home}");
    assert!(home.contains("<strong>alice-real</strong>"), "{home}");
}

/// The person's own reaction: in the JSON of the feed and the thread, shown pressed on
/// the page, and only then offered for withdrawal.
#[test]
fn your_reaction_is_shown_and_only_it_can_be_withdrawn() {
    let alice = daemon("alice");
    let id = alice.json(&["post", "a walk later?"])["id"].as_str().unwrap().to_owned();
    let web = Signed::new(&alice);
    let home = web.get("/").body;
    assert!(!home.contains("Withdraw your reaction"), "{home}");
    assert!(!home.contains(r#"aria-pressed="true""#), "{home}");
    assert!(alice.lines(&["feed"])[0].get("my_reaction").is_none());

    let heart = "\u{2764}\u{fe0f}";
    assert!(alice.json(&["react", &id, heart])["id"].is_string());
    assert_eq!(alice.lines(&["feed"])[0]["my_reaction"], heart);
    assert_eq!(alice.lines(&["thread", &id])[0]["my_reaction"], heart);
    let home = web.get("/").body;
    assert!(home.contains(&format!("Withdraw your reaction ({heart})")), "{home}");
    assert_eq!(home.matches(r#"aria-pressed="true""#).count(), 1, "{home}");
    assert!(home.contains(&format!(r#"aria-pressed="true">{heart}</button>"#)), "{home}");

    assert!(alice.json(&["unreact", &id])["id"].is_string());
    assert!(alice.lines(&["feed"])[0].get("my_reaction").is_none());
    let home = web.get("/").body;
    assert!(!home.contains("Withdraw your reaction"), "{home}");
}

/// The node page's mailboxes: whom this node's person relies on, and whom it holds for,
/// by name (escaped).
#[test]
fn the_node_page_shows_mailboxes_both_ways() {
    let (alice, bob) = (daemon("alice"), daemon("bob"));
    assert!(bob.json(&["profile", "set", "--name", "<b>bob</b>"])["id"].is_string());
    let web = Signed::new(&alice);
    let page = web.get("/node").body;
    assert!(page.contains("id=\"mailboxes-none\""), "{page}");
    befriend(&alice, &bob, DEADLINE);
    let page = eventually(DEADLINE, "Alice's node page to list Bob as her mailbox", || {
        let page = web.get("/node").body;
        let list = page.split("id=\"mailboxes\"").nth(1)?.split("</ul>").next()?.to_owned();
        list.contains("&#60;b&#62;bob&#60;/b&#62;").then_some(page)
    });
    assert!(!page.contains("<b>bob</b>"), "{page}");
    let bobs = Signed::new(&bob);
    eventually(DEADLINE, "Bob's node page to list Alice as held for", || {
        let page = bobs.get("/node").body;
        let list = page.split("id=\"holding\"").nth(1)?.split("</ul>").next()?.to_owned();
        (list.contains("alice") && list.contains("0 messages")).then_some(())
    });
}

/// A multipart form body with `fields` and one file field `attach`, and its content type.
fn multipart(fields: &[(&str, &str)], file: (&str, &[u8])) -> (Vec<u8>, String) {
    let boundary = "kith-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"attach\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            file.0
        )
        .as_bytes(),
    );
    body.extend_from_slice(file.1);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// A picture posted from the compose box (a multipart form, the CSRF token in its
/// header), shown as a thumbnail that opens the picture; a form without the header is
/// refused.
#[test]
fn pictures_over_http() {
    let alice = daemon("alice");
    let (addr, login) = sign_in_url(&alice);
    let host = addr.as_str();
    let origin = format!("http://{addr}");
    let r = http(&addr, "GET", &login, &[("Host", host)], b"");
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let signed_in = [("Host", host), ("Cookie", cookie.as_str())];
    let page = http(&addr, "GET", "/", &signed_in, b"").body;
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap()[..64].to_owned();
    assert!(page.contains("x-kith-csrf"), "the compose form sends its token in a header");

    let png = kith_tests::pictures::png(640, 480);
    let (body, kind) = multipart(&[("csrf", &csrf), ("text", "the view")], ("view.png", &png));
    let base = [
        ("Host", host),
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", kind.as_str()),
    ];
    // The token in the body only (a multipart body is not read before the check): refused.
    assert_eq!(http(&addr, "POST", "/post", &base, &body).status, 403);
    let mut with_token = base.to_vec();
    with_token.push(("X-Kith-Csrf", csrf.as_str()));
    let r = http(&addr, "POST", "/post", &with_token, &body);
    assert_eq!(r.status, 303, "{}", r.body);

    let post = eventually(DEADLINE, "the post with its picture", || {
        alice.lines(&["feed"]).into_iter().find(|i| i["text"] == "the view")
    });
    let picture = &post["attachments"][0];
    assert_eq!(picture["name"], "view.png");
    assert_eq!(picture["width"], 640);
    let (hash, thumb) = (picture["hash"].as_str().unwrap(), picture["thumbnail"].as_str().unwrap());
    let home = http(&addr, "GET", "/", &signed_in, b"").body;
    assert!(home.contains(&format!("href=\"/blob/{hash}\"")), "{home}");
    assert!(home.contains(&format!("src=\"/blob/{thumb}\"")), "{home}");

    let full = http(&addr, "GET", &format!("/blob/{hash}"), &signed_in, b"");
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("image/png"));
    let csp = full.header("content-security-policy").unwrap();
    assert!(csp.contains("sandbox") && !csp.contains("script-src"), "{csp}");
    assert_eq!(full.body, String::from_utf8_lossy(&png));
    let small = http(&addr, "GET", &format!("/blob/{thumb}"), &signed_in, b"");
    assert_eq!(small.header("content-type"), Some("image/jpeg"));
    // Not signed in: nothing; an unknown file: not found (after asking around).
    assert_eq!(http(&addr, "GET", &format!("/blob/{hash}"), &[("Host", host)], b"").status, 401);
    let r = http(&addr, "GET", &format!("/blob/{}", "ab".repeat(32)), &signed_in, b"");
    assert_eq!(r.status, 404);
    // The uploaded copy is gone; the picture lives in the blob store only.
    let scratch = alice.home().join("blobs").join("tmp");
    assert_eq!(std::fs::read_dir(scratch).unwrap().count(), 0);
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// Whether Chromium, its driver and Selenium for `/usr/bin/python3` are installed.
fn browser_missing() -> Option<String> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromedriver", "/usr/bin/python3"] {
        if !Path::new(path).exists() {
            return Some(format!("{path} is missing"));
        }
    }
    let import = Command::new("/usr/bin/python3").args(["-c", "import selenium"]).output();
    match import {
        Ok(out) if out.status.success() => None,
        _ => Some("/usr/bin/python3 cannot import selenium".into()),
    }
}

#[test]
fn in_a_real_browser() {
    if let Some(missing) = browser_missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "browser test cannot run in CI: {missing} (apt-get install chromium chromium-driver python3-selenium)"
        );
        eprintln!("SKIPPED in_a_real_browser: {missing}; install chromium, chromium-driver, python3-selenium");
        return;
    }
    let alice = daemon("Alice");
    let bob = daemon("Bob");
    let carol = daemon("Carol");
    let dave = daemon("Dave");
    befriend(&alice, &bob, DEADLINE);
    assert_eq!(carol.json(&["dial", &alice.addr()])["ok"], true);
    bob.json(&["profile", "set", "--bio", "Walks, bikes and #p2p. Usually up early."]);
    let morning = "Morning! Anyone up for a walk by the river? #outdoors";
    bob.json(&["post", morning]);
    carol.json(&["post", "Reading about gossip meshes today #kith"]);
    eventually(DEADLINE, "bob's post at alice", || feed_has(&alice, morning).then_some(()));
    // Live posts travel by gossip: wait until alice and bob share a mesh.
    for d in [&alice, &bob] {
        eventually(DEADLINE, &format!("{} in a gossip mesh", d.name), || {
            (d.json(&["status"])["mesh_peers"].as_u64() >= Some(1)).then_some(())
        });
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Screenshots only when asked (scripts/test.sh asks in CI), so that a developer's
    // test run leaves the work tree as it was.
    let screenshots = std::env::var_os(SCREENSHOTS).map(|dir| root.join(dir));
    if let Some(dir) = &screenshots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let config = serde_json::json!({
        "kith": kith_tests::cli::kith_bin(),
        "homes": {
            "alice": alice.home(), "bob": bob.home(), "carol": carol.home(), "dave": dave.home()
        },
        "ids": { "alice": alice.id(), "bob": bob.id(), "carol": carol.id(), "dave": dave.id() },
        "screenshots": screenshots,
    });
    let out = Command::new("/usr/bin/python3")
        .arg(root.join("tests/web/browser.py"))
        .arg(config.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\n--- alice's daemon log ---\n{}",
        alice.log()
    );
    println!("{stdout}");
}
