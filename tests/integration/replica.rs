//! A real streaming replica of the test server, made by the test with
//! `pg_basebackup -R` into a second data directory on another port, with
//! the library preloaded and a short healing interval. Its cycles inspect
//! and report (state `standby`, issues counted) but write nothing and
//! request no repair; a repair on the primary arrives as one valid index
//! with the original name.

use postgres::{Client, NoTls};

use crate::common::*;

struct Replica {
    data: String,
    port: u16,
}

impl Replica {
    fn start() -> Replica {
        let s = settings();
        let port = s.port + 100;
        let data = format!("/tmp/rv_replica_{}_{port}", std::process::id());
        let _ = std::fs::remove_dir_all(&data);
        let out = as_server_user(
            &format!("{}/pg_basebackup", s.pgbin),
            &[
                "-h",
                &s.host,
                "-p",
                &s.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // postgresql.auto.conf is read last: its port and interval win.
        let auto = format!("{data}/postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap();
        conf.push_str(&format!(
            "\nport = {port}\nruvector.dag_healing_interval_ms = 1000\nruvector.dag_healing_recall_interval_s = 1\n"
        ));
        std::fs::write(&auto, conf).unwrap();
        // The primary's log came along with its data directory.
        let _ = std::fs::remove_file(format!("{data}/server.log"));
        let r = Replica { data, port };
        let out = as_server_user(
            &format!("{}/pg_ctl", s.pgbin),
            &["start", "-w", "-t", "120", "-D", &r.data, "-l", &r.log()],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        r
    }

    fn log(&self) -> String {
        format!("{}/server.log", self.data)
    }

    fn connect(&self, db: &str) -> Client {
        let s = settings();
        Client::connect(
            &format!(
                "host={} port={} user=postgres dbname={db} connect_timeout=30",
                s.host, self.port
            ),
            NoTls,
        )
        .unwrap_or_else(|e| panic!("replica: {e}"))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = as_server_user(
            &format!("{}/pg_ctl", settings().pgbin),
            &["stop", "-m", "fast", "-w", "-D", &self.data],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[test]
fn a_replica_inspects_and_reports_but_never_writes_or_repairs() {
    let db = TestDb::new("rep_replica");
    let mut c = db.connect();
    // m = 2 strands elements: an issue the replica's cycle finds.
    exec(
        &mut c,
        &format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops) WITH (m = 2, ef_construction = 4);
             CREATE TABLE u (id bigserial PRIMARY KEY, embedding vector(8));
             {};
             CREATE INDEX u_idx ON u USING hnsw (embedding vector_l2_ops);",
            random_rows("t", 5_000, 8, 0.0, 1.0),
            random_rows("u", 3_000, 8, 0.0, 1.0)
        ),
    );
    let replica = Replica::start();
    let mut r = replica.connect(&db.name);
    let in_recovery: bool = r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    wait_until("two cycles on the replica", 120, || {
        let h = healing(&mut r);
        database(&h, &db.name).is_some_and(|d| d["cycles"].as_u64().unwrap_or(0) >= 2)
    });
    let h = healing(&mut r);
    let d = database(&h, &db.name).unwrap();
    assert_eq!(d["standby"], true, "{d}");
    assert_eq!(d["indexes"], 2, "it inspected both indexes: {d}");
    assert!(
        d["open_issues"].as_u64().unwrap_or(0) >= 1,
        "it found the issue: {d}"
    );
    // Nothing was written or requested: the primary's tables are as they were.
    for table in ["issues", "repairs", "observations"] {
        assert_eq!(
            query_i64(
                &mut c,
                &format!("SELECT count(*) FROM ruvector_healing.{table}")
            ),
            0,
            "{table} on the primary"
        );
    }
    let log = std::fs::read_to_string(replica.log()).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "the replica logged errors:\n{}",
        errors.join("\n")
    );

    // A repair on the primary arrives as one valid index named u_idx.
    let id = request(&mut c, "u_idx", "rebuild");
    let row = wait(&mut c, id);
    assert_eq!(status(&row), "done", "{row:#}");
    let lsn: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    wait_until("the replica to replay the repair", 120, || {
        r.query_one(
            &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            &[],
        )
        .unwrap()
        .get::<_, bool>(0)
    });
    let valid: Vec<String> = r
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am a ON a.oid = c.relam
              WHERE i.indrelid = 'u'::regclass AND a.amname = 'hnsw' AND i.indisvalid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|x| x.get(0))
        .collect();
    assert_eq!(valid, vec!["u_idx".to_string()]);
}
