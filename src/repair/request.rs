//! The request path of a repair: what `ruvector_dag_repair_index`,
//! `ruvector_dag_repair`, `ruvector_dag_cancel_repair`,
//! `ruvector_dag_rollback`, `ruvector_dag_recover_repairs` and the
//! background cycle do in the caller's transaction. They check who asks
//! (`ruvector_healer` and PostgreSQL's right to maintain the table) and
//! what is asked, write the journal and start a worker; the work happens
//! in the worker, outside the caller's transaction (`CREATE INDEX
//! CONCURRENTLY` cannot run in a function).

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};

use super::catalog::{self, IndexFacts};
use super::plan::{self, Strategy};
use super::settings::{parse_scope, RepairSettings, Scope};
use super::worker::{launch, Mode};
use super::{counters, journal};
use crate::diagnose::futility;
use crate::diagnose::options::BuildOptions;
use crate::diagnose::IssueKind;
use crate::healing::policy::policy;
use crate::inspect::relation::{raise, resolve, Am};

/// Refuses unless the role asking may maintain the table: PostgreSQL's
/// `MAINTAIN` privilege (what `REINDEX` checks since PostgreSQL 17) or
/// ownership; superusers may. Membership in `ruvector_healer` is checked
/// by the functions' `EXECUTE` grant; both are needed.
pub fn require_maintain(table: pg_sys::Oid, name: &str) {
    let may = crate::sql::get_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1::oid, $2::oid, 'MAINTAIN')",
        &[unsafe { pg_sys::GetOuterUserId() }.into(), table.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !may {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            &format!("permission denied to repair the indexes of table {name}"),
            &format!(
                "repairs need membership in ruvector_healer and the right to maintain the table: GRANT MAINTAIN ON {name} TO {}",
                requester()
            ),
        );
    }
}

pub fn require_preload() {
    if !counters::available() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "repairs need ruvector_healing in shared_preload_libraries",
            "add shared_preload_libraries = 'ruvector_healing' to postgresql.conf and restart the server",
        );
    }
}

pub fn invalid(msg: &str, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, msg, hint)
}

/// The role that is asking (not the definer this function runs as).
pub fn requester() -> String {
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        if name.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Open issues of an index that a repair may address (`(id, kind)`, most
/// urgent first); when the index has none recorded, the detection rules
/// run now and record what they find.
fn open_issues(f: &IndexFacts, am: Am) -> Vec<(i64, IssueKind)> {
    let read = || -> Vec<(i64, IssueKind)> {
        Spi::connect(|c| {
            c.select(
                "SELECT issue_id, kind FROM ruvector_healing.issues
                  WHERE index_oid = $1 AND status = 'open' ORDER BY priority DESC, issue_id",
                None,
                &[f.oid.into()],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some((
                        r.get::<i64>(1).ok()??,
                        IssueKind::parse(&r.get::<String>(2).ok()??)
                            .filter(|k| *k != IssueKind::InvalidIndex)?,
                    ))
                })
                .collect()
            })
            .unwrap_or_default()
        })
    };
    let recorded = read();
    if !recorded.is_empty() {
        return recorded;
    }
    let h = crate::inspect::report::health_value(&resolve(Some(f.oid)));
    let mut found = Vec::new();
    crate::detect::record::issues_of(&h, am, &policy(f.oid).thresholds(), &mut found);
    for (name, i) in &found {
        crate::detect::record::record(
            name,
            f.table_oid,
            i.kind.name(),
            i.severity.name(),
            i.priority,
            &i.details,
        );
    }
    read()
}

/// What `auto` repairs: the issue (given, or the index's most urgent open
/// one), its diagnosis (made now unless a fresh one is recorded), and the
/// repair that addresses its cause. Refused, with the diagnosis's advice,
/// when the cause calls for no repair the worker may run.
struct Choice {
    strategy: Strategy,
    options: Option<BuildOptions>,
    issue_id: i64,
    kind: IssueKind,
    cause: String,
    diagnosis: Value,
}

fn choose_auto(f: &IndexFacts, am: Am, issue: Option<i64>) -> Choice {
    let issues = open_issues(f, am);
    let picked = match issue {
        Some(id) => issues.iter().find(|(i, _)| *i == id).copied(),
        None => issues.first().copied(),
    };
    let Some((issue_id, kind)) = picked else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("index \"{}\" has no detected issue: nothing to repair", f.qualified),
            "strategy => 'auto' repairs a detected issue; pass strategy => 'rebuild' (or 'vacuum', 'tune_search') to repair anyway",
        );
    };
    let p = policy(f.oid);
    let report = crate::inspect::report::health_value(&resolve(Some(f.oid)));
    let d = crate::healing::diagnosis::ensure(
        issue_id,
        f.oid,
        kind,
        &report,
        &p.thresholds(),
        p.allowance(),
        p.pin_lists,
        None,
    );
    let cause = d["cause"].as_str().unwrap_or("undetermined").to_string();
    let remedy = &d["remedy"];
    let (strategy, options) = match remedy["strategy"].as_str() {
        Some("vacuum") => (Strategy::Vacuum, None),
        Some("rebuild") => (
            Strategy::Rebuild,
            serde_json::from_value::<BuildOptions>(remedy["options"].clone()).ok(),
        ),
        Some("setting") => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "issue {issue_id} of \"{}\" is caused by the search setting, which no rebuild fixes: {}",
                f.qualified,
                d["reason"].as_str().unwrap_or("")
            ),
            &format!(
                "SET {} = {} (or ALTER DATABASE ... SET it); ruvector_dag_detected_issues(table) shows the diagnosis",
                remedy["setting"].as_str().unwrap_or(""),
                remedy["value"]
            ),
        ),
        _ => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "issue {issue_id} of \"{}\" ({cause}) has no repair the worker may run: {}",
                f.qualified,
                d["reason"].as_str().unwrap_or("")
            ),
            remedy["advice"].as_str().unwrap_or(""),
        ),
    };
    Choice {
        strategy,
        options,
        issue_id,
        kind,
        cause,
        diagnosis: d,
    }
}

/// Refuses a repair that was tried for the same cause, with the same
/// strategy and options, did not fix it, and nothing has changed since
/// (the table within 20 % of its size then); the issue is marked as
/// needing a person, with the advice, so that the worker stops trying.
fn refuse_futile(f: &IndexFacts, c: &Choice, rows: i64) {
    let history = journal::attempts(&f.schema, &f.relname);
    let options = c.options.unwrap_or_default();
    let Some(a) = futility::futile(&history, &c.cause, c.strategy.name(), &options, rows) else {
        return;
    };
    let advice = format!(
        "repair {} ({} for {}) did not fix this and the table has not changed since; a rebuild with other options (ruvector_dag_repair_index(index, 'rebuild', options => ...)), a different search setting, or a look at the data is needed",
        a.repair_id, a.strategy, a.cause
    );
    let _ = Spi::run_with_args(
        "UPDATE ruvector_healing.issues
            SET diagnosis = diagnosis || jsonb_build_object('needs_person', true, 'futile', $2::jsonb,
                            'remedy', jsonb_build_object('strategy', 'none', 'advice', $3::text))
          WHERE issue_id = $1",
        &[
            c.issue_id.into(),
            JsonB(json!(a)).into(),
            advice.clone().into(),
        ],
    );
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        &format!(
            "a futile repair of \"{}\": repair {} tried the same for the same cause and did not fix it",
            f.qualified, a.repair_id
        ),
        &advice,
    );
}

/// Average duration of this index's past successful repairs by the same
/// strategy (`None` without history: no figure is invented).
fn estimated_ms(f: &IndexFacts, s: Strategy) -> Option<f64> {
    crate::sql::get_one::<f64>(
        "SELECT avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 FROM (
            SELECT finished_at, started_at FROM ruvector_healing.repairs
             WHERE table_oid = $1 AND relname = $2 AND strategy = $3 AND status = 'done'
               AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT 5) r",
        &[
            f.table_oid.into(),
            f.relname.clone().into(),
            s.name().into(),
        ],
    )
    .ok()
    .flatten()
}

/// Bytes the rebuilt index will need: its size now, scaled for a change of
/// HNSW `m` (every element stores `2 m` neighbours and more).
fn estimated_bytes(f: &IndexFacts, options: Option<&BuildOptions>) -> u64 {
    let bytes = f.bytes.max(0) as u64;
    let Some(new_m) = options.and_then(|o| o.m) else {
        return bytes;
    };
    let old_m = f
        .definition
        .option("m")
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::diagnose::options::DEFAULT_M);
    let dims = crate::sql::get_one::<i32>(
        "SELECT atttypmod FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum = 1",
        &[f.oid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0)
    .max(1) as u32;
    crate::diagnose::options::hnsw_rebuilt_bytes(bytes, dims, old_m, new_m)
}

/// What the repair will do. Only a dry run counts the table's rows for
/// IVFFlat `lists` (the worker counts again when it plans the build).
fn preview(
    f: &IndexFacts,
    s: Strategy,
    am: Am,
    dry_run: bool,
    options: Option<&BuildOptions>,
) -> Value {
    match s {
        Strategy::Rebuild => {
            let (def, lists) = if dry_run || options.is_some() {
                let (def, planned) = crate::repair::rebuild::rebuilt_definition(f, am, options);
                let lists = planned.map_or(
                    Value::Null,
                    |(old, new, rows)| json!({"old": old, "new": new, "rows": rows}),
                );
                (def, lists)
            } else {
                (f.definition.clone(), json!("counted by the worker"))
            };
            let mem = crate::sql::get_one::<i64>(
                "SELECT setting::int8 * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'",
                &[],
            )
            .ok()
            .flatten();
            let bytes = estimated_bytes(f, options) as i64;
            json!({
                "statement": def.create_concurrently("<new index>").ok(),
                "options": options,
                "lists": lists,
                "index_bytes": f.bytes,
                "estimated_bytes": bytes,
                "disk_needed_bytes": plan::disk_needed(bytes.max(0) as u64),
                "disk_free_bytes": catalog::free_bytes(f.tablespace_oid),
                "build_memory": {
                    "estimate_bytes": bytes,
                    "maintenance_work_mem_bytes": mem,
                    "fits": mem.map(|m| m >= bytes),
                    "note": "estimated as the new index's size; a graph larger than maintenance_work_mem is built on disk, slower but not failed"
                },
            })
        }
        Strategy::Vacuum => json!({"statement": format!("VACUUM (INDEX_CLEANUP ON) {}", f.table)}),
        Strategy::TuneSearch => json!({"scope": crate::config::tuning_scope()}),
    }
}

/// Checks options a person passed: pgvector's ranges, and only the
/// options of the index's access method.
fn check_options(f: &IndexFacts, am: Am, o: &BuildOptions) {
    let wrong = match am {
        Am::Hnsw => o.lists.is_some(),
        Am::IvfFlat => o.m.is_some() || o.ef_construction.is_some(),
    };
    if wrong {
        invalid(
            &format!(
                "options {} do not apply to an {} index",
                serde_json::to_string(o).unwrap_or_default(),
                am.name()
            ),
            "HNSW takes m and ef_construction, IVFFlat takes lists",
        );
    }
    let current = |k: &str, d: u16| {
        f.definition
            .option(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let full = BuildOptions {
        m: o.m.or(Some(current("m", 16))).filter(|_| am == Am::Hnsw),
        ef_construction: o
            .ef_construction
            .or(Some(current("ef_construction", 64)))
            .filter(|_| am == Am::Hnsw),
        lists: o.lists,
    };
    if let Err(e) = full.check() {
        invalid(
            &e,
            "for example options => '{\"m\": 16, \"ef_construction\": 64}'",
        );
    }
}

/// Plans, journals and starts a repair; `by` names the requester when it
/// is not the current role (the background cycle). `options`: build
/// options a person asked for (with strategy `rebuild`); with `auto` the
/// diagnosis of the issue chooses strategy and options.
pub(crate) fn request(
    index: Option<pg_sys::Oid>,
    strategy: Option<&str>,
    dry_run: bool,
    issue: Option<i64>,
    by: Option<&str>,
    options: Option<BuildOptions>,
) -> i64 {
    require_preload();
    // Issues are found by OID below: after a restore they must name this
    // database's indexes first.
    crate::release::adopt_restored();
    let t = resolve(index);
    let Some(f) = catalog::facts(t.oid) else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "the index disappeared while being planned",
            "",
        )
    };
    if by.is_none() {
        require_maintain(f.table_oid, &f.table);
    }
    let am = t.am;
    let named = strategy.unwrap_or("auto");
    let chosen = Strategy::parse(named).unwrap_or_else(|e| {
        invalid(
            &e,
            "pass strategy => 'auto' to let the detected issue choose",
        )
    });
    let rows = catalog::tuple_stats(f.table_oid).1;
    let (strategy, options, issue_id, cause, kind, reason) = match chosen {
        Some(s) => {
            if let Some(o) = &options {
                if s != Strategy::Rebuild {
                    invalid(
                        "options apply to strategy => 'rebuild' only",
                        "pass strategy => 'rebuild'",
                    );
                }
                check_options(&f, am, o);
            }
            let kind = issue.and_then(|id| {
                crate::sql::get_one::<String>(
                    "SELECT kind FROM ruvector_healing.issues WHERE issue_id = $1",
                    &[id.into()],
                )
                .ok()
                .flatten()
                .and_then(|k| IssueKind::parse(&k))
            });
            let why = json!({"requested": s.name(), "options": options});
            (s, options, issue, "requested".to_string(), kind, why)
        }
        None => {
            if options.is_some() {
                invalid(
                    "with strategy => 'auto' the diagnosis chooses the options",
                    "pass strategy => 'rebuild' with options => ..., or leave options out",
                );
            }
            let c = choose_auto(&f, am, issue);
            if !dry_run {
                refuse_futile(&f, &c, rows);
            }
            let why = json!({"issue": c.kind.name(), "issue_id": c.issue_id, "cause": c.cause,
                             "reason": c.diagnosis["reason"], "remedy": c.diagnosis["remedy"]});
            (
                c.strategy,
                c.options,
                Some(c.issue_id),
                c.cause,
                Some(c.kind),
                why,
            )
        }
    };
    if let Err(e) = strategy.can_repair(am) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &e,
            "use strategy => 'rebuild'",
        );
    }
    if let Some(why) = f
        .unsafe_to_rebuild()
        .filter(|_| strategy == Strategy::Rebuild)
    {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("cannot rebuild: {why}"),
            "",
        );
    }
    if t.partitioned {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("\"{}\" is a partitioned index", t.name),
            "repair the index of each partition",
        );
    }
    // A rebuild is validated, and tuning chooses, by measured recall:
    // refused before any build where recall cannot be measured.
    if strategy != Strategy::Vacuum && t.vector_type.filter(|v| v.decodable()).is_none() {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!(
                "cannot {} \"{}\": its values are of type {}, whose recall cannot be measured to validate the result",
                strategy.name(),
                t.name,
                t.type_name
            ),
            "rebuilds and tuning are validated by recall, measured for vector and halfvec indexes; REINDEX INDEX CONCURRENTLY rebuilds it without validation",
        );
    }
    let settings = RepairSettings::capture();
    if strategy == Strategy::TuneSearch {
        match parse_scope(&settings.tuning_scope) {
            Ok(Scope::Off) => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "ruvector.dag_healing_tuning_scope is off: tuned settings are not applied",
                "SET ruvector.dag_healing_tuning_scope = 'database' (or 'role:<name>'); ruvector_dag_tune_search() only measures",
            ),
            Ok(Scope::Index) if !crate::config::ADAPTIVE_SEARCH.get() => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "ruvector.dag_healing_tuning_scope is 'index', but ruvector.dag_adaptive_search is off: an index's own value would not be used",
                "ALTER DATABASE <db> SET ruvector.dag_adaptive_search = on (the sessions that should use it need it on)",
            ),
            Err(e) => invalid(&e, ""),
            _ => {}
        }
    }
    if !dry_run {
        if let Some((other, status)) = journal::active_on_table(f.table_oid, 0) {
            raise(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                &format!("repair {other} of table {} is {status}: one repair per table at a time", f.table),
                &format!("wait for it with CALL ruvector_dag_wait_repair({other}), or cancel it with ruvector_dag_cancel_repair({other})"),
            );
        }
    }
    let plan = json!({
        "settings": settings,
        "choice": reason,
        "cause": cause,
        "issue_kind": kind.map(|k| k.name()),
        "options": options,
        "rows": rows,
        "estimated_duration_ms": estimated_ms(&f, strategy),
        "preview": preview(&f, strategy, am, dry_run, options.as_ref()),
        "reversible": strategy.reversible(),
    });
    let status = if dry_run { "dry_run" } else { "planned" };
    let (id, xid) = Spi::get_two_with_args::<i64, String>(
        "INSERT INTO ruvector_healing.repairs
                (index_oid, index_name, schema_name, relname, table_oid, table_name, strategy,
                 issue_id, dry_run, status, requested_by, requester_xid, plan, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, pg_current_xact_id(), $12,
                 CASE WHEN $9 THEN now() END)
         RETURNING repair_id, requester_xid::text",
        &[
            f.oid.into(),
            f.qualified.clone().into(),
            f.schema.clone().into(),
            f.relname.clone().into(),
            f.table_oid.into(),
            f.table.clone().into(),
            strategy.name().into(),
            issue_id.into(),
            dry_run.into(),
            status.into(),
            by.map(String::from).unwrap_or_else(requester).into(),
            JsonB(plan).into(),
        ],
    )
    .ok()
    .and_then(|(a, b)| Some((a?, b?)))
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not record the repair",
            "the table ruvector_healing.repairs is missing or altered; reinstall the extension",
        )
    });
    if dry_run {
        return id;
    }
    let refuse = |why: String| {
        let _ = Spi::run_with_args(
            "UPDATE ruvector_healing.repairs SET status = 'refused', error = $2, finished_at = now()
              WHERE repair_id = $1",
            &[id.into(), why.clone().into()],
        );
        journal::step(id, "refused", json!({"error": why}));
        counters::record(counters::Outcome::Refused);
        pgrx::warning!("repair {id} refused: {why}");
    };
    if !settings.enabled {
        refuse("ruvector.dag_healing_enabled is off".into());
        return id;
    }
    if unsafe { pg_sys::RecoveryInProgress() } {
        refuse("the server is a standby (in recovery): repairs run on the primary".into());
        return id;
    }
    if let Err(e) = launch(Mode::Repair, id, xid.parse().unwrap_or(0)) {
        refuse(e);
    }
    id
}

/// `(status, strategy, table)` of a repair, or the error that it does not
/// exist.
fn repair_row(id: i64) -> (String, String, pg_sys::Oid, String) {
    let row = Spi::connect(|c| {
        let r = c
            .select(
                "SELECT status, strategy, table_oid, table_name FROM ruvector_healing.repairs
                  WHERE repair_id = $1",
                None,
                &[id.into()],
            )
            .ok()?
            .next()?;
        Some((
            r.get::<String>(1).ok()??,
            r.get::<String>(2).ok()??,
            r.get::<pg_sys::Oid>(3).ok()??,
            r.get::<String>(4).ok()??,
        ))
    });
    row.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            &format!("repair {id} does not exist"),
            "list repairs with ruvector_dag_repair_history(table)",
        )
    })
}

/// Cancels a repair that has not swapped yet. Before its worker started it
/// is marked cancelled; while building, validating or swapping its worker
/// (as the registry names it) is signalled and rolls the step back.
pub fn cancel(id: i64) -> Value {
    let (status, _, table, table_name) = repair_row(id);
    require_maintain(table, &table_name);
    let cancelled_now = Spi::get_one_with_args::<i64>(
        "UPDATE ruvector_healing.repairs SET status = 'cancelled', finished_at = now(),
                error = 'cancelled by ' || $2 || ' before it started'
          WHERE repair_id = $1 AND status = 'planned' RETURNING repair_id",
        &[id.into(), requester().into()],
    )
    .ok()
    .flatten()
    .is_some();
    if cancelled_now {
        journal::step(id, "cancelled", json!({"by": requester()}));
        counters::record(counters::Outcome::Cancelled);
        return json!({"repair_id": id, "status": "cancelled", "action": "cancelled before it started"});
    }
    match status.as_str() {
        "building" | "validating" | "swapping" => {}
        "swapped" | "retiring" | "rolling_back" => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} is {status}: past the swap, it can no longer be cancelled"),
            &format!("let it finish, then undo it with ruvector_dag_rollback({id})"),
        ),
        s => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} has already finished ({s})"),
            "",
        ),
    }
    // Only a pid the worker wrote itself into the registry is signalled.
    let Some(pid) = journal::worker_pid(id) else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} was interrupted: its worker is gone"),
            "ruvector_dag_recover_repairs() rolls it back",
        );
    };
    journal::step(
        id,
        "cancel_requested",
        json!({"by": requester(), "pid": pid}),
    );
    // The worker's own cancel handler turns this into a clean rollback of
    // the step (as pg_cancel_backend would, without needing its rights).
    unsafe { libc::kill(pid, libc::SIGINT) };
    json!({"repair_id": id, "status": status, "action": "cancel signalled; the worker drops what it built",
           "worker_pid": pid})
}

/// Asks a worker to undo a finished repair whose backup is kept (or the
/// tuned setting). Reports what was asked; the row says what happened
/// (`rolled_back`, or `rollback_failed` with the reason).
pub fn rollback(id: i64) -> Value {
    require_preload();
    let (status, strategy, table, table_name) = repair_row(id);
    require_maintain(table, &table_name);
    if status != "done" && status != "rollback_failed" {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} is {status}: only a finished (done) repair can be rolled back"),
            "a repair that failed or was cancelled already left the original in place",
        );
    }
    if strategy == "vacuum" {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("repair {id} was a vacuum, which cannot be undone"),
            "",
        );
    }
    let backup = crate::sql::get_one::<JsonB>(
        "SELECT coalesce(backup, '{}') FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .map(|j| j.0)
    .unwrap_or_default();
    if !backup["kept"].as_bool().unwrap_or(false) {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("repair {id} kept no backup (it was dropped, or ruvector.dag_healing_rollback_enabled was off)"),
            "a kept index is dropped after ruvector.dag_healing_backup_retention_min",
        );
    }
    if let Some((other, st)) = journal::active_on_table(table, id) {
        raise(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            &format!("repair {other} of the same table is {st}"),
            &format!("wait for it with CALL ruvector_dag_wait_repair({other})"),
        );
    }
    let from = plan::Status::parse(&status).unwrap_or(plan::Status::Done);
    journal::advance(
        id,
        from,
        plan::Status::RollingBack,
        json!({"by": requester()}),
    );
    let xid = Spi::get_one::<String>("SELECT pg_current_xact_id()::text")
        .ok()
        .flatten()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    if let Err(e) = launch(Mode::Rollback, id, xid) {
        raise(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, &e, "");
    }
    let restores = match strategy.as_str() {
        "tune_search" => json!({"setting": backup["setting"], "value": backup["previous"]}),
        _ => json!({"index": backup["index"], "as": index_name_of(id)}),
    };
    json!({"repair_id": id, "status": "rolling_back", "restores": restores,
           "action": "a worker restores the previous index or setting; wait with CALL ruvector_dag_wait_repair(repair_id): the row ends rolled_back, or rollback_failed with the reason"})
}

fn index_name_of(id: i64) -> Value {
    crate::sql::get_one::<String>(
        "SELECT index_name FROM ruvector_healing.repairs WHERE repair_id = $1",
        &[id.into()],
    )
    .ok()
    .flatten()
    .map(Value::from)
    .unwrap_or(Value::Null)
}

/// Starts a worker that finishes or rolls back interrupted repairs and
/// retires expired backups; reports what it found.
pub fn recover() -> Value {
    require_preload();
    let interrupted = journal::orphans(0);
    let due = crate::sql::get_one::<i64>(
        "SELECT count(*) FROM ruvector_healing.repairs
          WHERE backup ? 'drop_pending'
             OR (coalesce((backup->>'kept')::bool, false) AND strategy = 'rebuild'
                 AND status IN ('done', 'rollback_failed')
                 AND finished_at + make_interval(mins => (backup->>'keep_minutes')::int) < now())",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    let started = if interrupted.is_empty() && due == 0 {
        false
    } else {
        let xid = Spi::get_one::<String>("SELECT pg_current_xact_id()::text")
            .ok()
            .flatten()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        launch(Mode::Recover, 0, xid).unwrap_or_else(|e| {
            raise(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, &e, "")
        });
        true
    };
    json!({"interrupted_repairs": interrupted, "backups_to_retire": due, "worker_started": started})
}
