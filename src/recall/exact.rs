//! Exact k-nearest neighbours for a batch of queries in one pass over the
//! rows: rows arrive in blocks, each block's distances to every query come
//! from one matrix product, and each query keeps a bounded top-k.
//!
//! Distances follow pgvector's operators: `<->` (l2), `<#>` (negative inner
//! product), `<=>` (cosine distance), `<+>` (l1). The same code computes the
//! distances of the rows an index scan returned, so an ANN answer and the
//! exact k-th distance are compared on equal terms.

use std::collections::BinaryHeap;

use ndarray::{Array2, ArrayView2};

use crate::inspect::vectors::Metric;

/// Rows per block: large enough for the matrix product to pay off, small
/// enough to stay in cache-friendly memory (128 dims: 2 MB per block).
pub const BLOCK_ROWS: usize = 4096;

/// A distance with a total order (NaN sorts last, as in pgvector's scans).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dist(pub f64);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = if self.0.is_nan() {
            f64::INFINITY
        } else {
            self.0
        };
        let b = if other.0.is_nan() {
            f64::INFINITY
        } else {
            other.0
        };
        a.total_cmp(&b)
    }
}

/// The k smallest distances seen so far (a max-heap of size k).
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<(Dist, u64)>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, d: f64, id: u64) {
        let d = Dist(d);
        if self.heap.len() < self.k {
            self.heap.push((d, id));
        } else if let Some(&(worst, _)) = self.heap.peek() {
            if d < worst {
                self.heap.pop();
                self.heap.push((d, id));
            }
        }
    }

    /// The k-th distance once k rows are kept; a row must beat it to enter.
    pub fn worst_if_full(&self) -> Option<f64> {
        (self.heap.len() == self.k)
            .then(|| self.heap.peek().map(|(d, _)| d.0))
            .flatten()
    }

    /// The exact distance of a kept row.
    pub fn distance_of(&self, id: u64) -> Option<f64> {
        self.heap.iter().find(|(_, i)| *i == id).map(|(d, _)| d.0)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The largest kept distance: the k-th nearest (or the farthest row when
    /// fewer than k rows exist).
    pub fn kth(&self) -> Option<f64> {
        self.heap.peek().map(|(d, _)| d.0)
    }

    /// Kept ids, nearest first.
    pub fn ids(&self) -> Vec<u64> {
        let mut v: Vec<(Dist, u64)> = self.heap.iter().copied().collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }
}

/// Exact top-k for `queries` over the rows fed by [`ExactSearch::add_row`].
///
/// A block's distances come from one f32 matrix product; that is fast but
/// loses precision (l2 through |x|² + |q|² − 2x·q cancels for close
/// vectors), so it only pre-selects: a row whose approximate distance is
/// within a safety margin of a query's current k-th distance is scored again
/// with the exact f64 formula of [`Metric::distance`], and only exact
/// distances enter the top-k.
pub struct ExactSearch {
    metric: Metric,
    dim: usize,
    queries: Array2<f32>,
    query_rows: Vec<Vec<f32>>,
    query_norms: Vec<f64>,
    pub tops: Vec<TopK>,
    block: Vec<f32>,
    block_ids: Vec<u64>,
    pub rows: u64,
    /// Rows scored exactly after pre-selection (for the report).
    pub rescored: u64,
}

impl ExactSearch {
    /// `queries`: one vector per query, all of the same dimensions.
    pub fn new(metric: Metric, k: usize, queries: &[Vec<f32>]) -> ExactSearch {
        let dim = queries.first().map_or(0, |q| q.len());
        let mut flat = Vec::with_capacity(queries.len() * dim);
        for q in queries {
            flat.extend_from_slice(q);
        }
        let queries_m =
            Array2::from_shape_vec((queries.len(), dim), flat).expect("queries share dim");
        ExactSearch {
            metric,
            dim,
            queries: queries_m,
            query_rows: queries.to_vec(),
            query_norms: queries.iter().map(|q| norm2(q)).collect(),
            tops: (0..queries.len()).map(|_| TopK::new(k)).collect(),
            block: Vec::with_capacity(BLOCK_ROWS * dim),
            block_ids: Vec::with_capacity(BLOCK_ROWS),
            rows: 0,
            rescored: 0,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds one row; a row of other dimensions is refused.
    pub fn add_row(&mut self, id: u64, v: &[f32]) -> Result<(), String> {
        if v.len() != self.dim {
            return Err(format!(
                "row has {} dimensions, the queries have {}",
                v.len(),
                self.dim
            ));
        }
        self.block.extend_from_slice(v);
        self.block_ids.push(id);
        self.rows += 1;
        if self.block_ids.len() == BLOCK_ROWS {
            self.flush();
        }
        Ok(())
    }

    /// Processes the rows buffered so far (call once after the last row).
    pub fn flush(&mut self) {
        let n = self.block_ids.len();
        if n > 0 && self.queries.nrows() > 0 {
            let rows = ArrayView2::from_shape((n, self.dim), &self.block).expect("block shape");
            let approx = match self.metric {
                Metric::L1 => None,
                _ => Some(rows.dot(&self.queries.t())),
            };
            for r in 0..n {
                let row = &self.block[r * self.dim..(r + 1) * self.dim];
                let row_norm = approx.as_ref().map(|_| norm2(row));
                for q in 0..self.tops.len() {
                    if let (Some(dots), Some(rn)) = (&approx, row_norm) {
                        let worst = self.tops[q].worst_if_full().unwrap_or(f64::INFINITY);
                        let qn = self.query_norms[q];
                        let (d, margin) =
                            approximate(self.metric, self.dim, dots[[r, q]] as f64, rn, qn);
                        // Far beyond the k-th distance even allowing for
                        // rounding: cannot enter the top-k.
                        if d - margin >= worst {
                            continue;
                        }
                    }
                    self.rescored += 1;
                    let exact = self.metric.distance(&self.query_rows[q], row);
                    self.tops[q].push(exact, self.block_ids[r]);
                }
            }
        }
        self.block.clear();
        self.block_ids.clear();
    }
}

fn norm2(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum()
}

/// Approximate distance from an f32 dot product and the squared norms, and
/// a margin that bounds its rounding error: an f32 sum of `dim` products is
/// off by at most about dim · ε of the sum of their magnitudes (≤ |x||q|);
/// twice that for safety.
fn approximate(
    metric: Metric,
    dim: usize,
    dot: f64,
    row_norm2: f64,
    query_norm2: f64,
) -> (f64, f64) {
    let scale = (row_norm2 * query_norm2).sqrt();
    let rel = 2.0 * dim.max(1) as f64 * f32::EPSILON as f64;
    match metric {
        Metric::L2 => {
            let sq = (row_norm2 + query_norm2 - 2.0 * dot).max(0.0);
            let sq_err = 2.0 * rel * scale + 1e-12;
            let d = sq.sqrt();
            // The true distance is at least sqrt(sq - sq_err).
            (d, d - (sq - sq_err).max(0.0).sqrt())
        }
        Metric::InnerProduct => (-dot, rel * scale + 1e-12),
        Metric::Cosine => {
            if scale == 0.0 {
                (f64::NAN, 0.0)
            } else {
                (1.0 - (dot / scale).clamp(-1.0, 1.0), rel + 1e-12)
            }
        }
        _ => (f64::NAN, 0.0),
    }
}

/// How far apart two distances may be and still be the same distance to
/// pgvector: its operators compute in f32, whose rounding over `dim` terms
/// can reorder rows whose exact (f64) distances differ by about dim · ε of
/// the magnitudes involved. Such rows are ties, not misses. Cosine distance
/// is 1 − cos: its error is absolute, not relative to the (small) distance.
pub fn tie_tolerance(metric: Metric, dim: usize, kth: f64) -> f64 {
    let e = 4.0 * dim.max(1) as f64 * f32::EPSILON as f64;
    match metric {
        Metric::Cosine => e,
        Metric::InnerProduct => e * kth.abs().max(1.0),
        _ => e * kth.abs() + 1e-12,
    }
}

/// Recall of one query: the share of the k true neighbours the ANN answer
/// found. An answer row counts as a hit when its distance is within `tol`
/// of the exact k-th distance (ties at the k-th distance are not misses).
/// When the relation holds fewer than k rows, all of them are the truth.
pub fn query_recall(top: &TopK, k: usize, ann_dists: &[f64], tol: f64) -> Option<f64> {
    let truth = top.len().min(k);
    if truth == 0 {
        return None;
    }
    let kth = top.kth().unwrap_or(f64::INFINITY);
    let hits = ann_dists
        .iter()
        .take(k)
        .filter(|d| **d <= kth + tol)
        .count();
    Some(hits.min(truth) as f64 / truth as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vecs(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn topk_keeps_the_k_smallest() {
        let mut t = TopK::new(3);
        for (i, d) in [5.0, 1.0, 4.0, 2.0, 3.0, f64::NAN].iter().enumerate() {
            t.push(*d, i as u64);
        }
        assert_eq!(t.ids(), vec![1, 3, 4]);
        assert_eq!(t.kth(), Some(3.0));
    }

    #[test]
    fn batched_pass_matches_brute_force_for_every_metric() {
        let rows = vecs(BLOCK_ROWS + 777, 12, 1);
        let queries = vecs(9, 12, 2);
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1] {
            let mut ex = ExactSearch::new(metric, 5, &queries);
            for (i, r) in rows.iter().enumerate() {
                ex.add_row(i as u64, r).unwrap();
            }
            ex.flush();
            for (qi, q) in queries.iter().enumerate() {
                let mut brute: Vec<(f64, u64)> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (metric.distance(q, r), i as u64))
                    .collect();
                brute.sort_by(|a, b| a.0.total_cmp(&b.0));
                let want: Vec<u64> = brute.iter().take(5).map(|x| x.1).collect();
                assert_eq!(ex.tops[qi].ids(), want, "{metric:?} query {qi}");
                let kth = ex.tops[qi].kth().unwrap();
                assert!(
                    (kth - brute[4].0).abs() < 1e-5,
                    "{metric:?}: {kth} vs {}",
                    brute[4].0
                );
            }
        }
    }

    #[test]
    fn close_vectors_are_ranked_exactly() {
        // Distances far below f32 dot-product precision: pre-selection must
        // not drop or misorder them.
        let base: Vec<f32> = (0..64).map(|i| 100.0 + i as f32).collect();
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                let mut v = base.clone();
                v[0] += i as f32 * 1e-3;
                v
            })
            .collect();
        let mut ex = ExactSearch::new(Metric::L2, 3, std::slice::from_ref(&base));
        for (i, r) in rows.iter().enumerate().rev() {
            ex.add_row(i as u64, r).unwrap();
        }
        ex.flush();
        assert_eq!(ex.tops[0].ids(), vec![0, 1, 2]);
        assert_eq!(ex.tops[0].distance_of(0), Some(0.0));
        assert!(ex.add_row(1000, &[1.0]).is_err());
    }

    #[test]
    fn recall_counts_ties_as_hits() {
        let mut t = TopK::new(3);
        for (i, d) in [0.0, 1.0, 2.0, 2.0, 9.0].iter().enumerate() {
            t.push(*d, i as u64);
        }
        // The answer holds the other row at distance 2.0: still a hit.
        assert_eq!(query_recall(&t, 3, &[0.0, 1.0, 2.0], 0.0), Some(1.0));
        assert_eq!(query_recall(&t, 3, &[0.0, 9.0], 0.0), Some(1.0 / 3.0));
        assert_eq!(query_recall(&t, 3, &[], 0.0), Some(0.0));
        // Fewer rows than k: the truth is every row.
        let mut small = TopK::new(10);
        small.push(0.5, 1);
        small.push(0.7, 2);
        assert_eq!(query_recall(&small, 10, &[0.5, 0.7], 0.0), Some(1.0));
        assert_eq!(query_recall(&TopK::new(10), 10, &[], 0.0), None);
        // Within f32 rounding of the k-th distance: a tie.
        let tol = tie_tolerance(Metric::Cosine, 128, 1e-4);
        assert_eq!(
            query_recall(&t, 3, &[0.0, 1.0, 2.0 + tol / 2.0], tol),
            Some(1.0)
        );
        assert!(tie_tolerance(Metric::L2, 128, 2.0) < 1e-3);
    }
}
