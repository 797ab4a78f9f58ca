//! What the templates show, made from control API replies. Every piece of text that came
//! from the network passes through the sanitiser ([`crate::text`]) here; the templates
//! then escape it.

use std::collections::HashMap;

use kith_protocol::{AuthorId, Tag};

use crate::{
    api::{AttachmentEntry, FeedItem, Request, Response, ThreadEntry},
    node::Node,
    text,
};

/// How many characters of an id's end are shown beside a name, as the CLI does.
const ID_TAIL: usize = 6;

/// Multi-line text from the network (a post, a bio, a message) as it may be shown: the
/// project's one sanitiser ([`text::body`]); the templates then escape it.
pub(super) fn clean(text: &str) -> String {
    text::body(text).into_owned()
}

/// The end of an id, shown after `…` so that two people with one name differ.
pub(super) fn id_tail(id: &str) -> &str {
    id.get(id.len().saturating_sub(ID_TAIL)..).unwrap_or(id)
}

/// A person as pages show them: your petname for them, else the name they gave
/// themselves, when one is known; and always the id's tail.
#[derive(Debug, Clone)]
pub(super) struct Who {
    pub(super) id: String,
    /// The name to show (cleaned): the petname when there is one; or `None`.
    pub(super) name: Option<String>,
    /// Whether `name` is your petname for them.
    pub(super) petname: bool,
    /// The name they gave themselves, when a petname is shown instead (cleaned).
    pub(super) calls: Option<String>,
    pub(super) tail: String,
    /// Their name looks like another known person's, or like a petname given to someone
    /// else (the node's judgement, [`crate::api::Naming`]): pages mark it.
    pub(super) lookalike: bool,
}

/// A name from the network or the store as it may be shown, or `None` when nothing is
/// left of it.
fn shown_name(name: &str) -> Option<String> {
    Some(text::name(name).trim().to_owned()).filter(|n| !n.is_empty())
}

impl Who {
    pub(super) fn new(id: &str, name: Option<&str>) -> Self {
        let name = name.and_then(shown_name);
        let tail = id_tail(id).to_owned();
        Self { id: id.to_owned(), tail, name, petname: false, calls: None, lookalike: false }
    }

    /// `id` with their profile `name` and your `petname` for them (shown first).
    pub(super) fn named(id: &str, name: Option<&str>, petname: Option<&str>) -> Self {
        let who = Self::new(id, name);
        match petname.and_then(shown_name) {
            Some(petname) => Self { calls: who.name, name: Some(petname), petname: true, ..who },
            None => who,
        }
    }

    /// The name, or `…tail` when none is known (for titles and labels).
    pub(super) fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("…{}", self.tail),
        }
    }

    /// A hover text: what they call themselves when a petname is shown, and their id.
    pub(super) fn hover(&self) -> String {
        match (&self.calls, self.petname) {
            (Some(calls), true) => format!("your petname; calls themselves {calls} · {}", self.id),
            (None, true) => format!("your petname · {}", self.id),
            _ => self.id.clone(),
        }
    }
}

/// Every petname, asked of the node: id to petname.
pub(super) async fn petnames(node: &Node) -> HashMap<String, String> {
    match node.handle(Request::Names).await {
        Response::Names { entries } => entries.into_iter().map(|e| (e.id, e.petname)).collect(),
        _ => HashMap::new(),
    }
}

/// Names of people (petnames and profile names), asked of the node once per page.
pub(super) struct Names<'n> {
    node: &'n Node,
    known: HashMap<String, Option<String>>,
    /// Whether a person's name looks like another's, asked of the node once per person.
    lookalikes: HashMap<String, bool>,
    petnames: Option<HashMap<String, String>>,
}

impl<'n> Names<'n> {
    pub(super) fn new(node: &'n Node) -> Self {
        Self { node, known: HashMap::new(), lookalikes: HashMap::new(), petnames: None }
    }

    /// Remembers a name the API already gave.
    pub(super) fn note(&mut self, id: &str, name: Option<&str>) {
        if name.is_some() || !self.known.contains_key(id) {
            self.known.insert(id.to_owned(), name.map(str::to_owned));
        }
    }

    /// `id` with the profile name the API gave (`name`) and its petname.
    pub(super) async fn named(&mut self, id: &str, name: Option<&str>) -> Who {
        self.note(id, name);
        self.who(id).await
    }

    async fn petname(&mut self, id: &str) -> Option<String> {
        if self.petnames.is_none() {
            self.petnames = Some(petnames(self.node).await);
        }
        self.petnames.as_ref().and_then(|p| p.get(id)).cloned()
    }

    pub(super) async fn who(&mut self, id: &str) -> Who {
        let petname = self.petname(id).await;
        if !self.lookalikes.contains_key(id) {
            let request = Request::ProfileShow { id: Some(id.to_owned()) };
            let (name, lookalike) = match self.node.handle(request).await {
                Response::Profile(p) => (p.name, p.naming.lookalike),
                _ => (None, false),
            };
            self.lookalikes.insert(id.to_owned(), lookalike);
            self.known.entry(id.to_owned()).or_insert(name);
        }
        let name = self.known.get(id).cloned().flatten();
        let who = Who::named(id, name.as_deref(), petname.as_deref());
        // A petname is never marked: it is the person's own name for them.
        let lookalike = !who.petname && self.lookalikes.get(id).copied().unwrap_or(false);
        Who { lookalike, ..who }
    }
}

/// A moment, for `<time>`: ISO 8601 (UTC) and a short form relative to now.
#[derive(Debug, Clone)]
pub(super) struct When {
    pub(super) iso: String,
    pub(super) short: String,
}

impl When {
    pub(super) fn at(ms: u64, now_ms: u64) -> Self {
        let (date, time) = civil(ms);
        let iso = format!("{date}T{time}Z");
        let ago = now_ms.saturating_sub(ms) / 1000;
        let short = match ago {
            _ if ms > now_ms + 60_000 => format!("{date} {time}"),
            0..=59 => "now".to_owned(),
            60..=3599 => format!("{} min", ago / 60),
            3600..=86_399 => format!("{} h", ago / 3600),
            86_400..=604_799 => format!("{} d", ago / 86_400),
            _ => date,
        };
        Self { iso, short }
    }
}

/// `YYYY-MM-DD` and `HH:MM` (UTC) of a time in ms since the epoch (days to civil date as
/// in Howard Hinnant's `civil_from_days`).
fn civil(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), format!("{:02}:{:02}", rem / 3600, rem % 3600 / 60))
}

/// A piece of a post's text.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Text(String),
    Tag(String),
    Mention(Who),
}

/// Splits cleaned text into plain runs, `#tags` and `@mentions` (as the protocol parses
/// them), so that pages can link the last two.
pub(super) fn segments(text: &str) -> Vec<RawSeg> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        let word_start =
            prev.is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '#' || p == '@'));
        if word_start && (c == '#' || c == '@') {
            let word_len: usize = if c == '#' {
                after
                    .chars()
                    .take_while(|d| d.is_alphanumeric() || *d == '_')
                    .map(char::len_utf8)
                    .sum()
            } else {
                after.chars().take_while(char::is_ascii_alphanumeric).map(char::len_utf8).sum()
            };
            let word = &after[..word_len];
            let found = if c == '#' {
                Tag::parse(word).ok().map(|t| RawSeg::Tag(t.to_string()))
            } else {
                word.parse::<AuthorId>().ok().map(|id| RawSeg::Mention(id.to_string()))
            };
            if let Some(seg) = found {
                if !plain.is_empty() {
                    out.push(RawSeg::Text(std::mem::take(&mut plain)));
                }
                out.push(seg);
                prev = word.chars().last();
                rest = &after[word_len..];
                continue;
            }
        }
        plain.push(c);
        prev = Some(c);
        rest = after;
    }
    if !plain.is_empty() {
        out.push(RawSeg::Text(plain));
    }
    out
}

/// A segment before mentions are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawSeg {
    Text(String),
    Tag(String),
    Mention(String),
}

/// The text of a post, cleaned and split, with mentions named.
pub(super) async fn body(text: &str, names: &mut Names<'_>) -> Vec<Seg> {
    let mut out = Vec::new();
    for seg in segments(&clean(text)) {
        out.push(match seg {
            RawSeg::Text(t) => Seg::Text(t),
            RawSeg::Tag(t) => Seg::Tag(t),
            RawSeg::Mention(id) => Seg::Mention(names.who(&id).await),
        });
    }
    out
}

/// Longest side of a thumbnail as shown, pixels.
const THUMB_SIDE: u32 = 320;

/// A file of a post as a card shows it: a thumbnail that opens the picture, or a link
/// that downloads the file.
#[derive(Debug, Clone)]
pub(super) struct AttachmentView {
    pub(super) hash: String,
    /// The file's name, cleaned.
    pub(super) name: String,
    pub(super) mime: String,
    /// Its size for people (`412.7 KiB`).
    pub(super) size: String,
    /// The thumbnail's hash, for a picture that has one.
    pub(super) thumb: Option<String>,
    /// The thumbnail's width and height as shown.
    pub(super) width: u32,
    pub(super) height: u32,
}

impl AttachmentView {
    fn of(a: &AttachmentEntry) -> Self {
        let (w, h) = a.dimensions.unwrap_or((THUMB_SIDE, THUMB_SIDE));
        let scale = f64::from(THUMB_SIDE) / f64::from(w.max(h).max(1));
        let fit =
            |n: u32| if scale < 1.0 { (f64::from(n) * scale).round().max(1.0) as u32 } else { n };
        Self {
            hash: a.hash.clone(),
            name: text::line(&a.name).into_owned(),
            mime: text::line(&a.mime).into_owned(),
            size: crate::node::human_size(a.size),
            thumb: a.thumbnail.clone(),
            width: fit(w),
            height: fit(h),
        }
    }
}

pub(super) fn attachment_views(list: &[AttachmentEntry]) -> Vec<AttachmentView> {
    list.iter().map(AttachmentView::of).collect()
}

/// A post as a card: in feeds, on a person's page, in a thread.
#[derive(Debug, Clone)]
pub(super) struct PostView {
    pub(super) id: String,
    pub(super) author: Who,
    pub(super) reposted_by: Option<Who>,
    pub(super) when: When,
    /// Sort key for live insertion (timestamp, zero-padded).
    pub(super) key: String,
    pub(super) body: Vec<Seg>,
    pub(super) reply_to: Option<String>,
    pub(super) attachments: Vec<AttachmentView>,
    pub(super) reactions: Vec<(String, u64)>,
    /// The person's own reaction (empty when none): its button is shown pressed, and
    /// the withdraw button only appears when there is one.
    pub(super) my_reaction: String,
    pub(super) mine: bool,
    /// Depth in a thread (0 elsewhere), at most [`MAX_INDENT`].
    pub(super) depth: usize,
    /// Why the last action on this post failed.
    pub(super) error: Option<String>,
    /// A circle post: only its circle reads it, and it takes no replies, reactions or
    /// reposts.
    pub(super) private: bool,
}

/// Deepest indentation of a reply in a thread.
const MAX_INDENT: usize = 6;

impl PostView {
    pub(super) async fn of_feed(
        item: &FeedItem,
        me: &str,
        now: u64,
        names: &mut Names<'_>,
    ) -> Self {
        names.note(&item.author, item.author_name.as_deref());
        let reposted_by = match &item.reposted_by {
            Some(id) => Some(names.who(id).await),
            None => None,
        };
        Self {
            id: item.id.clone(),
            author: names.who(&item.author).await,
            reposted_by,
            when: When::at(item.timestamp, now),
            key: format!("{:016}", item.timestamp),
            body: body(&item.text, names).await,
            reply_to: item.reply_to.clone(),
            attachments: attachment_views(&item.attachments),
            reactions: clean_reactions(&item.reactions),
            my_reaction: item.my_reaction.clone().unwrap_or_default(),
            mine: item.author == me,
            depth: 0,
            error: None,
            private: item.private,
        }
    }

    pub(super) async fn of_thread(
        entry: &ThreadEntry,
        me: &str,
        now: u64,
        names: &mut Names<'_>,
    ) -> Self {
        names.note(&entry.author, entry.author_name.as_deref());
        Self {
            id: entry.id.clone(),
            author: names.who(&entry.author).await,
            reposted_by: None,
            when: When::at(entry.timestamp, now),
            key: format!("{:016}", entry.timestamp),
            body: body(&entry.text, names).await,
            reply_to: entry.parent.clone(),
            attachments: attachment_views(&entry.attachments),
            reactions: clean_reactions(&entry.reactions),
            my_reaction: entry.my_reaction.clone().unwrap_or_default(),
            mine: entry.author == me,
            depth: entry.depth.min(MAX_INDENT),
            error: None,
            private: false,
        }
    }
}

/// Reactions as shown: cleaned, most frequent first, at most a handful.
fn clean_reactions(reactions: &std::collections::BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = reactions
        .iter()
        .map(|(emoji, n)| (text::line(emoji).chars().take(8).collect::<String>(), *n))
        .filter(|(emoji, _)| !emoji.trim().is_empty())
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_is_sanitised() {
        assert_eq!(clean("a\u{1b}[31mred\u{7}\r\nb\tc"), "ared\nb\tc");
        assert_eq!(clean("<b>ok</b> é 👍"), "<b>ok</b> é 👍");
        let who = Who::new("12D3KooWabcdef", Some(" ali\u{200b}ce\u{1b}]0;title\u{7} "));
        assert_eq!(who.name.as_deref(), Some("ali<U+200B>ce"));
        assert_eq!(who.tail, "abcdef");
        assert_eq!(Who::new("x", Some("\u{1b}[2J")).label(), "…x");
        let named = Who::named("12D3KooWabcdef", Some("Alice"), Some("ally"));
        assert_eq!((named.label(), named.calls.as_deref()), ("ally".into(), Some("Alice")));
        assert!(named.hover().contains("calls themselves Alice"));
        let blank = Who::named("12D3KooWabcdef", Some("Alice"), Some(" "));
        assert_eq!((blank.label(), blank.petname), ("Alice".into(), false));
    }

    #[test]
    fn times() {
        assert_eq!(civil(0), ("1970-01-01".into(), "00:00".into()));
        // 2024-02-29 13:05:00 UTC
        assert_eq!(civil(1_709_211_900_000), ("2024-02-29".into(), "13:05".into()));
        let now = 1_709_211_900_000;
        assert_eq!(When::at(now - 5_000, now).short, "now");
        assert_eq!(When::at(now - 180_000, now).short, "3 min");
        assert_eq!(When::at(now - 8 * 86_400_000, now).short, "2024-02-21");
        assert_eq!(When::at(now, now).iso, "2024-02-29T13:05Z");
    }

    #[test]
    fn segments_find_tags_and_mentions() {
        let id = kith_protocol::Keypair::from_secret_bytes(&[3; 32]).id().to_string();
        let text = format!("hi #Rust and @{id}! a#b mail@x #");
        assert_eq!(
            segments(&text),
            vec![
                RawSeg::Text("hi ".into()),
                RawSeg::Tag("rust".into()),
                RawSeg::Text(" and ".into()),
                RawSeg::Mention(id),
                RawSeg::Text("! a#b mail@x #".into()),
            ]
        );
        assert_eq!(segments("<script>"), vec![RawSeg::Text("<script>".into())]);
    }
}
