//! Shared helpers: settings from the environment, connections, one scratch
//! database per test, the inspection functions' results as JSON, and small
//! decoders of raw index pages (fetched with pageinspect) used as an
//! independent cross-check of what the extension reports.

use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use serde_json::Value;

/// Where the test server is, read from the variables the test runner sets.
#[derive(Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// Directory holding `pgbench` (and the other client programs).
    pub pgbin: String,
    /// The server's data directory (its log is `server.log` there).
    pub data: String,
    /// The OS user the server runs as (only reported in messages).
    pub os_user: String,
}

const VARS: [&str; 5] = [
    "RUVECTOR_TEST_HOST",
    "RUVECTOR_TEST_PORT",
    "RUVECTOR_TEST_PGBIN",
    "RUVECTOR_TEST_DATA",
    "RUVECTOR_TEST_OS_USER",
];

pub fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        let missing: Vec<&str> = VARS
            .iter()
            .copied()
            .filter(|v| std::env::var(v).map_or(true, |x| x.is_empty()))
            .collect();
        assert!(
            missing.is_empty(),
            "integration tests need a running server; missing environment variable(s): {}.\n\
             Run them through scripts/test.sh, or set all of {} yourself, e.g.\n  \
             RUVECTOR_TEST_HOST=127.0.0.1 RUVECTOR_TEST_PORT=28830 RUVECTOR_TEST_PGBIN=$PG_BIN \
             RUVECTOR_TEST_DATA=/path/to/data RUVECTOR_TEST_OS_USER=ruvector \
             cargo test --features integration --test integration -- --test-threads=1",
            missing.join(", "),
            VARS.join(", ")
        );
        let var = |k: &str| std::env::var(k).unwrap();
        let port = var("RUVECTOR_TEST_PORT");
        Settings {
            host: var("RUVECTOR_TEST_HOST"),
            port: port
                .parse()
                .unwrap_or_else(|_| panic!("RUVECTOR_TEST_PORT={port:?} is not a port number")),
            pgbin: var("RUVECTOR_TEST_PGBIN"),
            data: var("RUVECTOR_TEST_DATA"),
            os_user: var("RUVECTOR_TEST_OS_USER"),
        }
    })
}

fn conn_string(db: &str, user: &str) -> String {
    let s = settings();
    format!(
        "host={} port={} user={} dbname={} application_name=ruvector_it connect_timeout=30",
        s.host, s.port, user, db
    )
}

pub fn try_connect_as(db: &str, user: &str) -> Result<Client, postgres::Error> {
    Client::connect(&conn_string(db, user), NoTls)
}

pub fn connect_as(db: &str, user: &str) -> Client {
    try_connect_as(db, user).unwrap_or_else(|e| {
        let s = settings();
        panic!(
            "cannot connect to database {db} as {user} at {}:{} (server run by OS user {}): {e}",
            s.host, s.port, s.os_user
        )
    })
}

pub fn connect(db: &str) -> Client {
    connect_as(db, "postgres")
}

/// Bytes in the server log now (0 if it cannot be read).
pub fn log_len() -> u64 {
    let path = format!("{}/server.log", settings().data);
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Lines of the server log written since `from` that tell of a crashed
/// backend. Empty when the log cannot be read (then only the live
/// connections prove that the server did not restart).
fn crash_lines_since(from: u64) -> Vec<String> {
    let path = format!("{}/server.log", settings().data);
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    let start = (from as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .filter(|l| {
            // The postmaster logs "server process (PID n) was terminated by
            // signal ..." or "... exited with exit code n" only for a backend
            // that died abnormally.
            l.contains("server process (PID")
                || l.contains("terminated by signal")
                || l.contains("all server processes terminated")
                || l.contains("PANIC:")
        })
        .map(str::to_string)
        .collect()
}

/// What the server logged since `from` (a `log_len()`).
pub fn log_since(from: u64) -> String {
    let path = format!("{}/server.log", settings().data);
    let bytes = fs::read(path).unwrap_or_default();
    let start = (from as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, with pgvector and ruvector_healing.
/// Dropped (with any roles the test registered) when it goes out of scope,
/// also when the test panics; then checks that the server is still up.
pub struct TestDb {
    pub name: String,
    roles: Vec<String>,
    log_start: u64,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        TestDb::new_at(tag, None)
    }

    /// The same with ruvector_healing at `version` (an earlier release's
    /// install script) instead of the default.
    pub fn new_at(tag: &str, version: Option<&str>) -> TestDb {
        let db = TestDb::bare(tag);
        let mut c = db.connect();
        let version = version.map_or(String::new(), |v| format!(" VERSION '{v}'"));
        c.batch_execute(&format!(
            "CREATE EXTENSION vector; CREATE EXTENSION ruvector_healing{version};"
        ))
        .unwrap_or_else(|e| panic!("creating the extensions in {}: {}", db.name, err_text(&e)));
        db
    }

    /// An empty database (no extension), dropped like the others.
    pub fn bare(tag: &str) -> TestDb {
        let name = format!(
            "rv_it_{tag}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let log_start = log_len();
        let mut admin = connect("postgres");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            name,
            roles: Vec::new(),
            log_start,
        }
    }

    pub fn connect(&self) -> Client {
        connect(&self.name)
    }

    /// The test crashed the server on purpose: crashes logged so far are
    /// not failures.
    pub fn crashes_expected(&mut self) {
        self.log_start = log_len();
    }

    /// Creates a login role (dropped with the database) and returns its name.
    pub fn create_role(&mut self, tag: &str) -> String {
        let role = format!("{}_{tag}", self.name);
        let mut admin = connect("postgres");
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
            ))
            .unwrap();
        self.roles.push(role.clone());
        role
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let result = (|| -> Result<(), String> {
            let mut admin = try_connect_as("postgres", "postgres").map_err(|e| e.to_string())?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .map_err(|e| e.to_string())?;
            for r in &self.roles {
                admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS {r}"))
                    .map_err(|e| e.to_string())?;
            }
            let one: i32 = admin
                .query_one("SELECT 1", &[])
                .map_err(|e| e.to_string())?
                .get(0);
            if one != 1 {
                return Err("SELECT 1 did not return 1".into());
            }
            let crashes = crash_lines_since(self.log_start);
            if !crashes.is_empty() {
                return Err(format!(
                    "the server log shows a crashed backend during the test:\n{}",
                    crashes.join("\n")
                ));
            }
            Ok(())
        })();
        if let Err(e) = result {
            if panicking {
                eprintln!("cleanup of {} after a failure: {e}", self.name);
            } else {
                panic!("after test database {}: {e}", self.name);
            }
        }
    }
}

/// The message, SQLSTATE and hint of an error, for assertion messages.
pub fn err_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{}: {} (SQLSTATE {}, hint: {:?})",
            d.severity(),
            d.message(),
            d.code().code(),
            d.hint()
        ),
        None => e.to_string(),
    }
}

/// Runs statements, panicking with the server's message on error.
pub fn exec(c: &mut Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{}\n  in: {sql}", err_text(&e)));
}

/// The single integer (smallint, integer or bigint) a query returns.
pub fn query_i64(c: &mut Client, sql: &str) -> i64 {
    let row = c
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{}\n  in: {sql}", err_text(&e)));
    row.try_get::<_, i64>(0)
        .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
        .or_else(|_| row.try_get::<_, i16>(0).map(i64::from))
        .unwrap_or_else(|e| panic!("{e}\n  in: {sql}"))
}

/// A jsonb-returning SQL expression, parsed.
pub fn json_of(c: &mut Client, expr: &str) -> Value {
    let sql = format!("SELECT ({expr})::text");
    let text: String = c
        .query_one(&sql, &[])
        .unwrap_or_else(|e| panic!("{}\n  in: {sql}", err_text(&e)))
        .get(0);
    serde_json::from_str(&text).unwrap()
}

/// `ruvector_dag_index_health(index)`.
pub fn try_health(c: &mut Client, index: &str) -> Result<Value, postgres::Error> {
    let row = c.query_one(
        "SELECT ruvector_dag_index_health($1::text::regclass)::text",
        &[&index],
    )?;
    Ok(serde_json::from_str(row.get::<_, &str>(0)).unwrap())
}

pub fn health(c: &mut Client, index: &str) -> Value {
    try_health(c, index)
        .unwrap_or_else(|e| panic!("ruvector_dag_index_health('{index}'): {}", err_text(&e)))
}

/// An unsigned integer field of a report.
pub fn u(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has no unsigned integer {key:?}: {v:#}"))
}

/// A numeric field of a report.
pub fn f(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("report has no number {key:?}: {v:#}"))
}

pub fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want} (tolerance {tol})"
    );
}

/// `pg_relation_size(index)`.
pub fn relation_size(c: &mut Client, rel: &str) -> u64 {
    c.query_one("SELECT pg_relation_size($1::text::regclass)", &[&rel])
        .unwrap()
        .get::<_, i64>(0) as u64
}

/// What a failed statement reported.
#[derive(Debug, Clone)]
pub struct Reported {
    pub message: String,
    pub hint: Option<String>,
    pub detail: Option<String>,
}

/// Asserts the error's SQLSTATE and that its message contains `needle`.
pub fn expect_error(
    r: Result<impl std::fmt::Debug, postgres::Error>,
    code: &str,
    needle: &str,
) -> Reported {
    let e = match r {
        Ok(v) => panic!("expected an error with SQLSTATE {code}, got {v:?}"),
        Err(e) => e,
    };
    let d = e
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error with SQLSTATE {code}, got: {e}"));
    assert_eq!(d.code().code(), code, "SQLSTATE of: {}", err_text(&e));
    assert!(
        d.message().contains(needle),
        "message {:?} should mention {needle:?}",
        d.message()
    );
    Reported {
        message: d.message().to_string(),
        hint: d.hint().map(str::to_string),
        detail: d.detail().map(str::to_string),
    }
}

/// Like [`expect_error`], and the error must say what to do in a HINT
/// (`DbError::hint()`).
pub fn expect_guided_error(
    r: Result<impl std::fmt::Debug, postgres::Error>,
    code: &str,
    needle: &str,
) -> Reported {
    let rep = expect_error(r, code, needle);
    assert!(
        rep.hint.as_deref().is_some_and(|h| !h.trim().is_empty()),
        "error {:?} carries no HINT (DETAIL: {:?})",
        rep.message,
        rep.detail
    );
    rep
}

// ------------------------------------------------------------ raw pages

pub const BLCKSZ: usize = 8192;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// Every page of a relation, read with pageinspect's `get_raw_page`.
/// Needs `CREATE EXTENSION pageinspect` in the database.
pub fn raw_pages(c: &mut Client, rel: &str) -> Vec<Vec<u8>> {
    let rows = c
        .query(
            "SELECT get_raw_page($1::text, b::int)
               FROM generate_series(0, pg_relation_size($1::text::regclass) / 8192 - 1) b
              ORDER BY b",
            &[&rel],
        )
        .unwrap_or_else(|e| panic!("get_raw_page on {rel}: {}", err_text(&e)));
    rows.iter()
        .map(|r| {
            let p: Vec<u8> = r.get(0);
            assert_eq!(p.len(), BLCKSZ);
            p
        })
        .collect()
}

/// Line pointers of a page as (offset, flags, length).
pub fn line_pointers(page: &[u8]) -> Vec<(usize, u8, usize)> {
    let lower = le16(page, 12) as usize;
    (0..(lower.saturating_sub(24)) / 4)
        .map(|i| {
            let raw = le32(page, 24 + 4 * i);
            (
                (raw & 0x7fff) as usize,
                ((raw >> 15) & 3) as u8,
                (raw >> 17) as usize,
            )
        })
        .collect()
}

/// Next block of pgvector's page chain (first field of the special area).
pub fn next_block(page: &[u8]) -> u32 {
    let special = le16(page, 16) as usize;
    le32(page, special)
}

/// What pgvector's HNSW meta page says (`HnswMetaPageData` after the
/// 24-byte page header).
#[derive(Debug)]
pub struct HnswMetaRaw {
    pub magic: u32,
    pub version: u32,
    pub dimensions: u32,
    pub m: u16,
    pub ef_construction: u16,
    pub entry_block: u32,
    pub entry_offset: u16,
    pub entry_level: i16,
}

pub fn hnsw_meta_raw(page0: &[u8]) -> HnswMetaRaw {
    let c = &page0[24..];
    HnswMetaRaw {
        magic: le32(c, 0),
        version: le32(c, 4),
        dimensions: le32(c, 8),
        m: le16(c, 12),
        ef_construction: le16(c, 14),
        entry_block: le32(c, 16),
        entry_offset: le16(c, 20),
        entry_level: le16(c, 22) as i16,
    }
}

/// Element and neighbor tuples counted straight from the pages.
#[derive(Debug, Default, PartialEq)]
pub struct HnswCensus {
    pub line_pointers: u64,
    pub elements: u64,
    pub live: u64,
    pub zombie: u64,
    pub deleted: u64,
    pub heap_tids: u64,
    pub neighbor_tuples: u64,
    /// Live elements by their top level.
    pub levels: Vec<u64>,
}

/// Decodes every HNSW page after the meta page: an element tuple starts
/// with type 1, `level`, `deleted`, `version`, then 10 heap tids of 6 bytes
/// (valid when the offset number is not 0); a neighbor tuple has type 2.
pub fn hnsw_census(pages: &[Vec<u8>]) -> HnswCensus {
    let mut s = HnswCensus::default();
    for page in &pages[1..] {
        for (off, flags, len) in line_pointers(page) {
            s.line_pointers += 1;
            if flags != 1 || len == 0 {
                continue;
            }
            let t = &page[off..off + len];
            match t[0] {
                1 => {
                    s.elements += 1;
                    let tids = (0..10).filter(|i| le16(t, 4 + 6 * i + 4) != 0).count() as u64;
                    if t[2] != 0 {
                        s.deleted += 1;
                    } else if le16(t, 8) != 0 {
                        s.live += 1;
                        s.heap_tids += tids;
                        let level = t[1] as usize;
                        if s.levels.len() <= level {
                            s.levels.resize(level + 1, 0);
                        }
                        s.levels[level] += 1;
                    } else {
                        s.zombie += 1;
                    }
                }
                2 => s.neighbor_tuples += 1,
                other => panic!("unexpected hnsw tuple type {other}"),
            }
        }
    }
    s
}

/// Level byte of the HNSW element tuple at `(block, offset)`.
pub fn hnsw_element_level(pages: &[Vec<u8>], block: u32, offset: u16) -> u8 {
    let page = &pages[block as usize];
    let (off, flags, len) = line_pointers(page)[offset as usize - 1];
    assert!(flags == 1 && len > 0, "no tuple at ({block},{offset})");
    assert_eq!(page[off], 1, "({block},{offset}) is not an element tuple");
    page[off + 1]
}

/// One IVFFlat list read from the pages: its first entry page, its center
/// (decoded when the key is `vector`), and the entries in its page chain.
#[derive(Debug)]
pub struct IvfListRaw {
    pub start_page: u32,
    pub center: Vec<f32>,
    pub entries: u64,
    pub pages: u64,
}

/// Follows the list pages from block 1 (each tuple: start page, insert
/// page, then the center as a 4-byte-header varlena: header, dim, unused,
/// floats), then each list's chain of entry pages counting normal items.
pub fn ivfflat_census(pages: &[Vec<u8>], decode_centers: bool) -> Vec<IvfListRaw> {
    let mut lists = Vec::new();
    let mut blk = 1u32;
    while blk != u32::MAX {
        let page = &pages[blk as usize];
        for (off, flags, len) in line_pointers(page) {
            assert_eq!(flags, 1, "list page item");
            let t = &page[off..off + len];
            let center = if decode_centers {
                let dim = le16(t, 12) as usize;
                (0..dim)
                    .map(|i| f32::from_le_bytes(t[16 + 4 * i..20 + 4 * i].try_into().unwrap()))
                    .collect()
            } else {
                Vec::new()
            };
            lists.push(IvfListRaw {
                start_page: le32(t, 0),
                center,
                entries: 0,
                pages: 0,
            });
        }
        blk = next_block(page);
    }
    for l in &mut lists {
        let mut blk = l.start_page;
        let mut hops = 0;
        while blk != u32::MAX {
            let page = &pages[blk as usize];
            l.entries += line_pointers(page)
                .iter()
                .filter(|(_, flags, len)| *flags == 1 && *len > 0)
                .count() as u64;
            blk = next_block(page);
            l.pages += 1;
            hops += 1;
            assert!(hops <= pages.len(), "ivfflat list chain loops");
        }
    }
    lists
}

/// A pgvector text literal of a vector.
pub fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", parts.join(","))
}

/// `INSERT`s `rows` random vectors of `dim` dimensions, uniform in
/// `[lo, lo + span)` (`+ g * 0` makes the subquery run per row).
pub fn random_rows(table: &str, rows: i64, dim: i32, lo: f64, span: f64) -> String {
    format!(
        "INSERT INTO {table} (embedding) SELECT array(SELECT {lo} + random() * {span} + g * 0
           FROM generate_series(1, {dim}))::vector FROM generate_series(1, {rows}) g"
    )
}

/// Clustered, embedding-like rows: `rows` unit vectors of `dim` dimensions
/// around topics `first .. first + topics` (centers drawn from a seeded
/// Gaussian, so the same topic number is the same center in every call),
/// topic sizes uneven (Zipf, exponent 0.8), each row its topic's center
/// plus Gaussian noise of `spread` per coordinate, normalized; inserted
/// topic by topic, as documents of one subject tend to arrive together.
pub fn clustered_rows(
    table: &str,
    rows: i64,
    dim: i32,
    first: i32,
    topics: i32,
    spread: f64,
) -> String {
    format!(
        "SELECT setseed(0.5);
         CREATE TEMP TABLE IF NOT EXISTS rv_topics (t int PRIMARY KEY, c float8[]);
         INSERT INTO rv_topics
         SELECT t, (SELECT array_agg(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) + 0 * d)
                      FROM generate_series(1, {dim}) d WHERE t > 0)
           FROM generate_series(1, {first} + {topics} - 1) t
         ON CONFLICT (t) DO NOTHING;
         INSERT INTO {table} (embedding)
         SELECT l2_normalize((SELECT array_agg(tp.c[d] + {spread} * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))
                                FROM generate_series(1, {dim}) d WHERE g > 0)::vector)
           FROM (SELECT t, greatest(1, round({rows} * power(t - {first} + 1, -0.8)
                          / (SELECT sum(power(s, -0.8)) FROM generate_series(1, {topics}) s)))::int AS n
                   FROM generate_series({first}, {first} + {topics} - 1) t) sizes
           JOIN rv_topics tp USING (t), generate_series(1, sizes.n) g
          ORDER BY t, g"
    )
}

/// Connects once the server accepts connections again (after a crash or
/// a restart), within two minutes.
pub fn wait_for_server(db: &str) -> Client {
    let started = Instant::now();
    loop {
        if let Ok(mut c) = try_connect_as(db, "postgres") {
            if c.query_one("SELECT 1", &[]).is_ok() {
                return c;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not come back"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `kill -9` a server process (the postmaster then restarts every backend).
pub fn kill_worker(pid: i64) {
    // A child killed by a signal makes the postmaster end every backend and
    // restart: this connection ends then. Waiting for that keeps the caller
    // from reconnecting before the restart, only to be cut off by it.
    let mut sentinel = connect("postgres");
    let out = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kill -9 {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while sentinel.simple_query("SELECT 1").is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not restart within a minute of kill -9 {pid}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ALTER SYSTEM SET`s for one test, reset (and reloaded) when dropped.
pub struct SystemSettings(Vec<String>);

impl SystemSettings {
    pub fn set(pairs: &[(&str, &str)]) -> SystemSettings {
        let mut c = connect("postgres");
        for (k, v) in pairs {
            exec(&mut c, &format!("ALTER SYSTEM SET {k} = '{v}'"));
        }
        exec(&mut c, "SELECT pg_reload_conf()");
        SystemSettings(pairs.iter().map(|(k, _)| k.to_string()).collect())
    }
}

impl Drop for SystemSettings {
    fn drop(&mut self) {
        if let Ok(mut c) = try_connect_as("postgres", "postgres") {
            for k in &self.0 {
                let _ = c.batch_execute(&format!("ALTER SYSTEM RESET {k}"));
            }
            let _ = c.batch_execute("SELECT pg_reload_conf()");
        }
    }
}

pub fn healing(c: &mut Client) -> Value {
    json_of(c, "ruvector_dag_healing_status()->'healing'")
}

pub fn database<'a>(h: &'a Value, name: &str) -> Option<&'a Value> {
    h["databases"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["database"] == name))
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

// ------------------------------------------------------------------ repairs

/// `ruvector_dag_repair_index(index, strategy)`: the repair id.
pub fn request(c: &mut Client, index: &str, strategy: &str) -> i64 {
    query_i64(
        c,
        &format!("SELECT ruvector_dag_repair_index('{index}', '{strategy}')"),
    )
}

pub fn row(c: &mut Client, id: i64) -> Value {
    json_of(
        c,
        &format!(
            "SELECT ruvector_healing.repair_row(r) FROM ruvector_healing.repairs r WHERE repair_id = {id}"
        ),
    )
}

/// `CALL ruvector_dag_wait_repair` (autocommit), then the history row.
pub fn wait(c: &mut Client, id: i64) -> Value {
    exec(
        c,
        &format!("CALL ruvector_dag_wait_repair({id}, 600, NULL)"),
    );
    row(c, id)
}

pub fn status(r: &Value) -> &str {
    r["status"].as_str().unwrap_or("?")
}

/// Runs a program as the server's OS user (through sudo when root).
pub fn as_server_user(program: &str, args: &[&str]) -> std::process::Output {
    let st = settings();
    let is_root = unsafe { libc_geteuid() } == 0;
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", "-u", &st.os_user, "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    };
    cmd.args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Mean recall@10 over the query rows `ids`, measured in SQL: exact top 10
/// with index scans disabled against the index's top 10, both through
/// `ORDER BY embedding <-> q LIMIT 10`. `setting` is applied for the index
/// queries (for example `SET hnsw.ef_search = 100`).
pub fn sql_recall(c: &mut Client, table: &str, ids: &[i64], setting: &str) -> f64 {
    sql_recall_with(c, table, "<->", ids, setting)
}

/// The same with another distance operator (`<=>` for cosine indexes).
pub fn sql_recall_with(c: &mut Client, table: &str, op: &str, ids: &[i64], setting: &str) -> f64 {
    let q = format!(
        "SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM {table}
           ORDER BY embedding {op} (SELECT embedding FROM {table} WHERE id = $1) LIMIT 10) s"
    );
    let mut total = 0.0;
    for id in ids {
        exec(c, "SET enable_indexscan = off; SET enable_bitmapscan = off");
        let exact: Vec<i64> = c.query_one(&q, &[id]).unwrap().get(0);
        exec(
            c,
            &format!("RESET enable_indexscan; RESET enable_bitmapscan; {setting}"),
        );
        let plan: Vec<String> = c
            .query(
                &format!("EXPLAIN (COSTS OFF) {}", q.replace("$1", &id.to_string())),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            plan.iter().any(|l| l.contains("Index Scan")),
            "the ANN query does not use the index:\n{}",
            plan.join("\n")
        );
        let ann: Vec<i64> = c.query_one(&q, &[id]).unwrap().get(0);
        let hit = ann.iter().filter(|x| exact.contains(x)).count();
        total += hit as f64 / exact.len().max(1) as f64;
    }
    total / ids.len() as f64
}

pub fn sample_ids(c: &mut Client, table: &str, n: i64) -> Vec<i64> {
    c.query(
        &format!("SELECT id FROM {table} ORDER BY md5(id::text) LIMIT {n}"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
