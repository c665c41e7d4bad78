//! Turns what a walk counted into the documented health metrics (README,
//! "Metrics"). Pure functions of the scan: no Postgres here.

use serde_json::{json, Map, Value};

use super::hnsw::HnswScan;
use super::ivfflat::IvfScan;
use super::layout::{ElementState, BLCKSZ};
use super::vectors::Metric;

fn ratio(num: f64, den: f64, empty: f64) -> f64 {
    if den == 0.0 {
        empty
    } else {
        num / den
    }
}

/// Round for display; keeps JSON readable without hiding meaningful digits.
pub fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Expected number of elements whose top level is `l`, for `n` elements and
/// pgvector's level generator: level = floor(-ln(U) * ml), ml = 1/ln(m), so
/// P(level >= l) = m^-l.
pub fn expected_top_level(n: u64, m: u16, l: usize) -> f64 {
    let m = m as f64;
    n as f64 * (m.powi(-(l as i32)) - m.powi(-(l as i32 + 1)))
}

pub fn expected_in_layer(n: u64, m: u16, l: usize) -> f64 {
    n as f64 * (m as f64).powi(-(l as i32))
}

/// Entry point quality in [0, 1]: how well the meta page's entry point
/// serves as the start of every search. 1 = a live element on the highest
/// level any live element has; scaled by (entry level + 1) / (highest live
/// level + 1); halved for a zombie entry (traversed but holds no row);
/// 0 for a deleted or missing entry while live elements exist.
pub fn entry_point_quality(s: &HnswScan) -> Option<f64> {
    let max = s.max_live_level?;
    let state_factor = match s.entry_state {
        Some(ElementState::Live) => 1.0,
        Some(ElementState::Zombie) => 0.5,
        _ => return Some(0.0),
    };
    let lvl = s.entry_level_actual.unwrap_or(0) as f64;
    Some(state_factor * ((lvl + 1.0) / (max as f64 + 1.0)).min(1.0))
}

pub fn hnsw_metrics(s: &HnswScan, bytes: u64) -> Map<String, Value> {
    let meta = s.meta.as_ref().expect("walk sets meta");
    let live = s.elements_live;
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_string(), v);
    };
    put("pages", json!(s.pages));
    put("bytes", json!(bytes));
    put("format_version", json!(meta.version));
    put("dimensions", json!(meta.dimensions));
    put("m", json!(meta.m));
    put("ef_construction", json!(meta.ef_construction));
    put("entry_level", json!(meta.entry_level));
    put(
        "entry_point",
        json!(meta.entry.is_valid().then(|| meta.entry.to_string())),
    );
    put("max_level", json!(s.max_live_level));
    put("elements_total", json!(s.elements_total));
    put("elements_live", json!(live));
    put("elements_zombie", json!(s.elements_zombie));
    put("elements_deleted", json!(s.elements_deleted));
    put("heap_tids", json!(s.heap_tids));
    put("reachable", json!(s.reachable_live));
    put("unreachable", json!(s.unreachable()));
    put(
        "unreachable_ratio",
        json!(r6(ratio(s.unreachable() as f64, live as f64, 0.0))),
    );
    put(
        "connectivity_score",
        json!(r6(ratio(s.reachable_live as f64, live as f64, 1.0))),
    );
    put("edges", json!(s.edges));
    put("dangling_edges", json!(s.dangling_edges));
    put("edges_to_zombies", json!(s.edges_to_zombies));
    put("stale_neighbor_lists", json!(s.stale_neighbor_lists));
    put("missing_neighbor_lists", json!(s.missing_neighbor_lists));
    let levels = s.layers.len();
    put(
        "layer_distribution",
        json!(s.layers.iter().map(|l| l.live_top).collect::<Vec<_>>()),
    );
    put(
        "layer_distribution_expected",
        json!((0..levels.max(1))
            .map(|l| r6(expected_top_level(live, meta.m, l)))
            .collect::<Vec<_>>()),
    );
    put("ml", json!(r6(1.0 / (meta.m as f64).ln())));
    put(
        "entry_point_state",
        json!(s.entry_state.map(|e| match e {
            ElementState::Live => "live",
            ElementState::Zombie => "zombie",
            ElementState::Deleted => "deleted",
        })),
    );
    put("entry_point_quality", json!(entry_point_quality(s).map(r6)));
    put(
        "layer0_fill",
        json!(r6(ratio(
            s.layer0_used as f64,
            s.layer0_lists as f64 * 2.0 * meta.m as f64,
            0.0
        ))),
    );
    put(
        "fragmentation",
        json!(r6(ratio(
            (s.elements_total - live) as f64,
            s.elements_total as f64,
            0.0
        ))),
    );
    put(
        "bytes_per_live_element",
        json!((live > 0).then(|| r6(bytes as f64 / live as f64))),
    );
    put(
        "free_space_ratio",
        json!(r6(ratio(
            s.free_bytes as f64,
            (s.chain_pages as f64) * BLCKSZ as f64,
            0.0
        ))),
    );
    put("concurrent_changes_seen", json!(s.concurrent_items));
    put(
        "walk",
        json!({
            "sweeps": s.sweeps,
            "page_reads": s.page_reads,
            "memory_bytes": s.slot_bytes,
            "memory_bytes_per_element": (s.elements_total > 0)
                .then(|| r6(s.slot_bytes as f64 / s.elements_total as f64)),
        }),
    );
    out
}

/// One row of `ruvector_dag_hnsw_levels`.
pub struct LevelRow {
    pub level: i32,
    pub live_elements: i64,
    pub live_in_layer: i64,
    pub expected: f64,
    pub expected_in_layer: f64,
    pub mean_out_degree: Option<f64>,
    pub max_degree: i32,
}

pub fn hnsw_levels(s: &HnswScan) -> Vec<LevelRow> {
    let meta = s.meta.as_ref().expect("walk sets meta");
    let live = s.elements_live;
    s.layers
        .iter()
        .enumerate()
        .map(|(l, st)| LevelRow {
            level: l as i32,
            live_elements: st.live_top as i64,
            live_in_layer: st.live_in_layer as i64,
            expected: r6(expected_top_level(live, meta.m, l)),
            expected_in_layer: r6(expected_in_layer(live, meta.m, l)),
            mean_out_degree: (st.degree_count > 0)
                .then(|| r6(st.degree_sum as f64 / st.degree_count as f64)),
            max_degree: if l == 0 {
                2 * meta.m as i32
            } else {
                meta.m as i32
            },
        })
        .collect()
}

/// Mean, population standard deviation, min and max of list sizes.
pub fn size_stats(sizes: &[u64]) -> (f64, f64, u64, u64) {
    if sizes.is_empty() {
        return (0.0, 0.0, 0, 0);
    }
    let n = sizes.len() as f64;
    let mean = sizes.iter().sum::<u64>() as f64 / n;
    let var = sizes
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (
        mean,
        var.sqrt(),
        *sizes.iter().min().unwrap(),
        *sizes.iter().max().unwrap(),
    )
}

/// Share of sampled entries whose nearest center (by the index's metric) is
/// the center of the list they sit in. `None` without a decoded sample.
pub fn centroid_quality(scan: &IvfScan, metric: Metric) -> Option<f64> {
    let centers: Vec<&Vec<f32>> = scan
        .lists
        .iter()
        .filter_map(|l| l.center.as_ref())
        .collect();
    if scan.sample.is_empty() || centers.len() != scan.lists.len() {
        return None;
    }
    let nearest_ok = scan
        .sample
        .iter()
        .filter(|(list, v)| {
            let own = metric.distance(v, centers[*list as usize]);
            // Ties count as correct: pgvector keeps the first of equals.
            let bar = own - 1e-9 * own.abs().max(1.0);
            !centers.iter().any(|c| metric.distance_below(v, c, bar))
        })
        .count();
    Some(nearest_ok as f64 / scan.sample.len() as f64)
}

/// Centroid drift: for each list, the Euclidean distance between its
/// trained center and the mean of the entries it holds now, divided by the
/// entries' mean Euclidean distance to the center; averaged over lists
/// weighted by size. Near 0 while the data looks like the training sample;
/// grows as inserted data moves away from where k-means put the centers.
/// For inner-product and cosine indexes pgvector's centers are unit vectors
/// (spherical k-means), so entries are normalised and their mean direction
/// (the normalised mean) is compared with the center.
pub fn centroid_drift(scan: &IvfScan) -> Option<f64> {
    let mut num = 0.0;
    let mut den = 0.0;
    for l in &scan.lists {
        let Some(c) = &l.center else { continue };
        if l.summed == 0 || l.l2_sum <= 0.0 {
            continue;
        }
        let n = l.summed as f64;
        let mut mean: Vec<f64> = l.sum.iter().map(|s| s / n).collect();
        if scan.spherical {
            let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            mean.iter_mut().for_each(|x| *x /= norm);
        }
        let shift = mean
            .iter()
            .zip(c)
            .map(|(m, c)| (m - *c as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        num += n * shift / (l.l2_sum / n);
        den += n;
    }
    (den > 0.0).then(|| num / den)
}

/// The `q` quantile of `values` (nearest rank: the smallest value with at
/// least `q` of them at or below it); 0 for none.
pub fn quantile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn ivfflat_metrics(s: &IvfScan, metric: Metric, bytes: u64) -> Map<String, Value> {
    let meta = s.meta.as_ref().expect("walk sets meta");
    let sizes: Vec<u64> = s.lists.iter().map(|l| l.tuples).collect();
    let (mean, sd, min, max) = size_stats(&sizes);
    let tuples = s.tuples();
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_string(), v);
    };
    put("pages", json!(s.pages));
    put("bytes", json!(bytes));
    put("format_version", json!(meta.version));
    put("dimensions", json!(meta.dimensions));
    put("lists", json!(meta.lists));
    put("tuples", json!(tuples));
    put("list_size_min", json!(min));
    put("list_size_max", json!(max));
    put("list_size_mean", json!(r6(mean)));
    put("list_size_stddev", json!(r6(sd)));
    // The distribution of list sizes, as AlloyDB's pg_stat_ann_indexes
    // shows it.
    for (k, q) in [
        ("list_size_p50", 0.5),
        ("list_size_p90", 0.9),
        ("list_size_p99", 0.99),
    ] {
        put(k, json!(quantile(&sizes, q)));
    }
    put("cluster_balance", json!(r6(ratio(sd, mean, 0.0))));
    put(
        "scan_cost_factor",
        json!(r6(1.0 + ratio(sd, mean, 0.0).powi(2))),
    );
    put(
        "empty_clusters",
        json!(s.lists.iter().filter(|l| l.tuples == 0).count()),
    );
    put(
        "dead_items",
        json!(s.lists.iter().map(|l| l.dead_items).sum::<u64>()),
    );
    let decoded: u64 = s.lists.iter().map(|l| l.decoded).sum();
    let dist_sum: f64 = s.lists.iter().map(|l| l.distance_sum).sum();
    put(
        "mean_distance_to_center",
        json!((decoded > 0).then(|| r6(dist_sum / decoded as f64))),
    );
    put(
        "centroid_quality",
        json!(centroid_quality(s, metric).map(r6)),
    );
    put("centroid_sample_size", json!(s.sample.len()));
    put("centroid_drift", json!(centroid_drift(s).map(r6)));
    put(
        "free_space_ratio",
        json!(r6(ratio(
            s.free_bytes as f64,
            (s.pages.saturating_sub(1 + s.list_pages)) as f64 * BLCKSZ as f64,
            0.0
        ))),
    );
    put("walk", json!({ "page_reads": s.page_reads }));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5, 1, 9, 3, 7];
        assert_eq!(super::quantile(&v, 0.5), 5);
        assert_eq!(super::quantile(&v, 0.9), 9);
        assert_eq!(super::quantile(&v, 0.0), 1);
        assert_eq!(super::quantile(&[], 0.5), 0);
        assert_eq!(super::quantile(&(1..=100).collect::<Vec<u64>>(), 0.99), 99);
    }

    use super::super::ivfflat::{tests::two_lists, tests::PlainDecoder, walk};
    use super::super::vectors::VectorType;
    use super::*;

    #[test]
    fn expected_levels_follow_ml() {
        // m = 16: 15/16 of the elements sit on level 0 only.
        assert!((expected_top_level(1600, 16, 0) - 1500.0).abs() < 1e-9);
        assert!((expected_top_level(1600, 16, 1) - 93.75).abs() < 1e-9);
        assert!((expected_in_layer(1600, 16, 1) - 100.0).abs() < 1e-9);
        let total: f64 = (0..20).map(|l| expected_top_level(1000, 4, l)).sum();
        assert!((total - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn list_statistics() {
        let (mean, sd, min, max) = size_stats(&[2, 4, 4, 4, 5, 5, 7, 9]);
        assert_eq!((mean, sd, min, max), (5.0, 2.0, 2, 9));
        assert_eq!(size_stats(&[]), (0.0, 0.0, 0, 0));
    }

    #[test]
    fn centroid_quality_and_drift() {
        let s = walk(
            &mut two_lists(),
            Metric::L2,
            VectorType::Vector,
            Some(&mut PlainDecoder),
            10,
        )
        .unwrap();
        // The entry in list 1 at (1,0) is nearer center 0: 3 of 4 are right.
        assert_eq!(centroid_quality(&s, Metric::L2), Some(0.75));
        // List 0: mean (0, 2/3), shift 2/3, mean distance 4/3 -> 0.5;
        // list 1: mean (1,0), shift 9, mean distance 9 -> 1.0; weighted 3:1.
        let d = centroid_drift(&s).unwrap();
        assert!((d - (3.0 * 0.5 + 1.0) / 4.0).abs() < 1e-12, "{d}");
        let m = ivfflat_metrics(&s, Metric::L2, 40960);
        assert_eq!(m["tuples"], json!(4));
        assert_eq!(m["list_size_max"], json!(3));
        assert_eq!(m["empty_clusters"], json!(0));
        assert_eq!(m["cluster_balance"], json!(0.5));
    }
}
