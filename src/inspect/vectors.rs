//! pgvector value types and distances, on plain slices.
//!
//! Values arrive as varlena payloads (header already stripped) read from
//! index pages. Distances mirror pgvector's operators so that figures such as
//! "mean distance to center" mean what `<->`, `<#>`, `<=>`, `<+>` mean.

use super::layout::{f32_at, i32_at, u16_le};

/// The element type of an index's key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorType {
    Vector,
    HalfVec,
    Bit,
    SparseVec,
}

impl VectorType {
    pub fn from_type_name(name: &str) -> Option<VectorType> {
        match name {
            "vector" => Some(VectorType::Vector),
            "halfvec" => Some(VectorType::HalfVec),
            "bit" => Some(VectorType::Bit),
            "sparsevec" => Some(VectorType::SparseVec),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            VectorType::Vector => "vector",
            VectorType::HalfVec => "halfvec",
            VectorType::Bit => "bit",
            VectorType::SparseVec => "sparsevec",
        }
    }
    /// Dense float types are decoded; `bit` and `sparsevec` are not.
    pub fn decodable(&self) -> bool {
        matches!(self, VectorType::Vector | VectorType::HalfVec)
    }
}

/// The distance of an operator class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    L2,
    InnerProduct,
    Cosine,
    L1,
    Hamming,
    Jaccard,
}

impl Metric {
    /// From an operator class name such as `vector_cosine_ops`.
    pub fn from_opclass(opclass: &str) -> Option<Metric> {
        let suffix = opclass.rsplit_once('_').map(|(head, _)| head)?;
        let kind = suffix.rsplit_once('_').map(|(_, k)| k).unwrap_or(suffix);
        match kind {
            "l2" => Some(Metric::L2),
            "ip" => Some(Metric::InnerProduct),
            "cosine" => Some(Metric::Cosine),
            "l1" => Some(Metric::L1),
            "hamming" => Some(Metric::Hamming),
            "jaccard" => Some(Metric::Jaccard),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner_product",
            Metric::Cosine => "cosine",
            Metric::L1 => "l1",
            Metric::Hamming => "hamming",
            Metric::Jaccard => "jaccard",
        }
    }
    /// pgvector's operator value for two dense vectors: `<->` (L2),
    /// `<#>` (negative inner product), `<=>` (cosine distance), `<+>` (L1).
    pub fn distance(&self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => l2_squared(a, b).sqrt(),
            Metric::InnerProduct => -dot(a, b),
            Metric::Cosine => {
                let (d, na, nb) = dot_norms(a, b);
                let denom = (na * nb).sqrt();
                if denom == 0.0 {
                    f64::NAN
                } else {
                    1.0 - (d / denom).clamp(-1.0, 1.0)
                }
            }
            Metric::L1 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum(),
            Metric::Hamming | Metric::Jaccard => f64::NAN,
        }
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let (mut d, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    (d, na, nb)
}

pub fn l2_squared(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum()
}

/// IEEE 754 binary16 to f32 (pgvector's `half`).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let frac = (h & 0x3FF) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3FF) << 13)
        }
        (0x1F, f) => sign | 0x7F80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Decodes a dense value payload (`int16 dim, int16 unused, elements`).
/// Returns `None` when the payload does not hold `dim` elements.
pub fn decode_dense(ty: VectorType, payload: &[u8]) -> Option<Vec<f32>> {
    if payload.len() < 4 {
        return None;
    }
    let dim = u16_le(payload, 0) as usize;
    match ty {
        VectorType::Vector => {
            if payload.len() < 4 + 4 * dim {
                return None;
            }
            Some((0..dim).map(|i| f32_at(payload, 4 + 4 * i)).collect())
        }
        VectorType::HalfVec => {
            if payload.len() < 4 + 2 * dim {
                return None;
            }
            Some(
                (0..dim)
                    .map(|i| f16_to_f32(u16_le(payload, 4 + 2 * i)))
                    .collect(),
            )
        }
        VectorType::Bit | VectorType::SparseVec => None,
    }
}

/// Decodes a dense value payload like [`decode_dense`], into `out`
/// (reused between values). Returns false when the payload does not hold
/// its `dim` elements.
pub fn decode_dense_into(ty: VectorType, payload: &[u8], out: &mut Vec<f32>) -> bool {
    out.clear();
    if payload.len() < 4 {
        return false;
    }
    let dim = u16_le(payload, 0) as usize;
    match ty {
        VectorType::Vector => {
            let Some(b) = payload.get(4..4 + 4 * dim) else {
                return false;
            };
            out.resize(dim, 0.0);
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            true
        }
        VectorType::HalfVec => {
            let Some(b) = payload.get(4..4 + 2 * dim) else {
                return false;
            };
            out.resize(dim, 0.0);
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
            true
        }
        VectorType::Bit | VectorType::SparseVec => false,
    }
}

/// The f32-lane kernels: eight lanes (two SSE registers on x86_64, where
/// SSE2 is always there; plain arrays elsewhere), added up in f64 at the
/// end. For the walk's statistics over many values this is as good as a
/// sequential f64 sum, and several times faster.
mod lanes {
    /// Which sum a kernel computes, lane by lane.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Op {
        /// (a - b)^2
        L2,
        /// |a - b|
        L1,
    }

    #[cfg(target_arch = "x86_64")]
    mod simd {
        use core::arch::x86_64::*;

        /// The four lanes of `v` added up in f64.
        #[inline(always)]
        unsafe fn hsum(v: __m128) -> f64 {
            let lo = _mm_cvtps_pd(v);
            let hi = _mm_cvtps_pd(_mm_movehl_ps(v, v));
            let s = _mm_add_pd(lo, hi);
            _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
        }

        /// Sum of `op(a[i], b[i])` over the first `n / 8 * 8` elements.
        #[inline(always)]
        pub fn sum(op: super::Op, a: &[f32], b: &[f32], n: usize) -> f64 {
            assert!(a.len() >= n && b.len() >= n);
            // SAFETY: SSE2 is part of x86_64; every load is within a[..n]
            // and b[..n] (checked above), unaligned loads.
            unsafe {
                let sign = _mm_set1_ps(-0.0);
                let (mut s0, mut s1) = (_mm_setzero_ps(), _mm_setzero_ps());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut i = 0;
                while i + 8 <= n {
                    let d0 = _mm_sub_ps(_mm_loadu_ps(pa.add(i)), _mm_loadu_ps(pb.add(i)));
                    let d1 = _mm_sub_ps(_mm_loadu_ps(pa.add(i + 4)), _mm_loadu_ps(pb.add(i + 4)));
                    if op == super::Op::L2 {
                        s0 = _mm_add_ps(s0, _mm_mul_ps(d0, d0));
                        s1 = _mm_add_ps(s1, _mm_mul_ps(d1, d1));
                    } else {
                        s0 = _mm_add_ps(s0, _mm_andnot_ps(sign, d0));
                        s1 = _mm_add_ps(s1, _mm_andnot_ps(sign, d1));
                    }
                    i += 8;
                }
                hsum(s0) + hsum(s1)
            }
        }

        /// Dot product and squared norm of `a` over the first `n / 8 * 8`.
        #[inline(always)]
        pub fn dot_norm(a: &[f32], b: &[f32], n: usize) -> (f64, f64) {
            assert!(a.len() >= n && b.len() >= n);
            // SAFETY: as in `sum`.
            unsafe {
                let (mut d0, mut d1) = (_mm_setzero_ps(), _mm_setzero_ps());
                let (mut q0, mut q1) = (_mm_setzero_ps(), _mm_setzero_ps());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut i = 0;
                while i + 8 <= n {
                    let (x0, x1) = (_mm_loadu_ps(pa.add(i)), _mm_loadu_ps(pa.add(i + 4)));
                    let (y0, y1) = (_mm_loadu_ps(pb.add(i)), _mm_loadu_ps(pb.add(i + 4)));
                    d0 = _mm_add_ps(d0, _mm_mul_ps(x0, y0));
                    d1 = _mm_add_ps(d1, _mm_mul_ps(x1, y1));
                    q0 = _mm_add_ps(q0, _mm_mul_ps(x0, x0));
                    q1 = _mm_add_ps(q1, _mm_mul_ps(x1, x1));
                    i += 8;
                }
                (hsum(d0) + hsum(d1), hsum(q0) + hsum(q1))
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    mod simd {
        pub fn sum(op: super::Op, a: &[f32], b: &[f32], n: usize) -> f64 {
            let mut acc = [0f32; 8];
            for (x, y) in a[..n / 8 * 8]
                .chunks_exact(8)
                .zip(b[..n / 8 * 8].chunks_exact(8))
            {
                for i in 0..8 {
                    let d = x[i] - y[i];
                    acc[i] += if op == super::Op::L2 { d * d } else { d.abs() };
                }
            }
            acc.iter().map(|&x| x as f64).sum()
        }

        pub fn dot_norm(a: &[f32], b: &[f32], n: usize) -> (f64, f64) {
            let (mut d, mut q) = ([0f32; 8], [0f32; 8]);
            for (x, y) in a[..n / 8 * 8]
                .chunks_exact(8)
                .zip(b[..n / 8 * 8].chunks_exact(8))
            {
                for i in 0..8 {
                    d[i] += x[i] * y[i];
                    q[i] += x[i] * x[i];
                }
            }
            (
                d.iter().map(|&x| x as f64).sum(),
                q.iter().map(|&x| x as f64).sum(),
            )
        }
    }

    /// Sum of `op(a[i], b[i])` over the common length.
    #[inline]
    pub fn sum(op: Op, a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len());
        let mut s = simd::sum(op, a, b, n);
        for (x, y) in a[n / 8 * 8..n].iter().zip(&b[n / 8 * 8..n]) {
            let d = x - y;
            s += (if op == Op::L2 { d * d } else { d.abs() }) as f64;
        }
        s
    }

    /// Dot product of `a` and `b`, squared norm of `a`, over the common length.
    #[inline]
    pub fn dot_norm(a: &[f32], b: &[f32]) -> (f64, f64) {
        let n = a.len().min(b.len());
        let (mut d, mut q) = simd::dot_norm(a, b, n);
        for (x, y) in a[n / 8 * 8..n].iter().zip(&b[n / 8 * 8..n]) {
            d += (x * y) as f64;
            q += (x * x) as f64;
        }
        (d, q)
    }
}

/// Squared Euclidean distance, f32 lanes (see [`lanes`]).
pub fn l2_squared_fast(a: &[f32], b: &[f32]) -> f64 {
    lanes::sum(lanes::Op::L2, a, b)
}

/// L1 distance, f32 lanes.
pub fn l1_fast(a: &[f32], b: &[f32]) -> f64 {
    lanes::sum(lanes::Op::L1, a, b)
}

/// Dot product of `a` and `b` and squared norm of `a` in one pass, f32 lanes.
pub fn dot_norm_fast(a: &[f32], b: &[f32]) -> (f64, f64) {
    lanes::dot_norm(a, b)
}

/// Dot product, squared norms of `a` and `b`, and the sum of `|a[i] b[i]|`,
/// in four f64 lanes (error far below 1e-12 relative to that sum).
fn dot_norms_lanes(a: &[f32], b: &[f32]) -> (f64, f64, f64, f64) {
    let n = a.len().min(b.len());
    let (mut d, mut na, mut nb, mut s) = ([0f64; 4], [0f64; 4], [0f64; 4], [0f64; 4]);
    let (a4, ar) = a[..n].split_at(n / 4 * 4);
    let (b4, br) = b[..n].split_at(n / 4 * 4);
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for i in 0..4 {
            let (x, y) = (x[i] as f64, y[i] as f64);
            d[i] += x * y;
            na[i] += x * x;
            nb[i] += y * y;
            s[i] += (x * y).abs();
        }
    }
    let mut out = (
        d.iter().sum::<f64>(),
        na.iter().sum::<f64>(),
        nb.iter().sum::<f64>(),
        s.iter().sum::<f64>(),
    );
    for (x, y) in ar.iter().zip(br) {
        let (x, y) = (*x as f64, *y as f64);
        out.0 += x * y;
        out.1 += x * x;
        out.2 += y * y;
        out.3 += (x * y).abs();
    }
    out
}

impl Metric {
    /// Exactly `self.distance(a, b) < bar`, decided from a fast estimate of
    /// the distance whenever its error bound keeps it clear of `bar`, else
    /// by the exact distance.
    pub fn distance_below(&self, a: &[f32], b: &[f32], bar: f64) -> bool {
        let n = a.len().min(b.len());
        let (est, err) = match self {
            Metric::L2 | Metric::L1 => {
                // Sums of non-negative f32 terms, n/8 of them per lane: each
                // term within 3 ulps, each addition within one.
                let rel = (n.div_ceil(8) + 4) as f64 * f32::EPSILON as f64;
                if *self == Metric::L2 {
                    let q = l2_squared_fast(a, b);
                    (q.sqrt(), q.sqrt() * rel)
                } else {
                    let q = l1_fast(a, b);
                    (q, q * rel)
                }
            }
            Metric::InnerProduct | Metric::Cosine => {
                let (d, na, nb, s) = dot_norms_lanes(a, b);
                let err = 1e-12 * (1.0 + s);
                if *self == Metric::InnerProduct {
                    (-d, err)
                } else {
                    let denom = (na * nb).sqrt();
                    if denom == 0.0 {
                        return self.distance(a, b) < bar;
                    }
                    (
                        1.0 - (d / denom).clamp(-1.0, 1.0),
                        1e-12 * (1.0 + s / denom),
                    )
                }
            }
            Metric::Hamming | Metric::Jaccard => return self.distance(a, b) < bar,
        };
        if rel_ok(err) && est + err < bar {
            true
        } else if rel_ok(err) && est - err >= bar {
            false
        } else {
            self.distance(a, b) < bar
        }
    }
}

/// Whether an error bound is usable (finite, not absurd).
fn rel_ok(err: f64) -> bool {
    err.is_finite() && err >= 0.0
}

/// Dimension count stored in a value of any pgvector type.
pub fn value_dimensions(ty: VectorType, payload: &[u8]) -> Option<i64> {
    match ty {
        VectorType::Vector | VectorType::HalfVec if payload.len() >= 2 => {
            Some(u16_le(payload, 0) as i64)
        }
        VectorType::Bit | VectorType::SparseVec if payload.len() >= 4 => {
            Some(i32_at(payload, 0) as i64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_pgvector_operators() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32, 6.0, 3.0];
        assert_eq!(Metric::L2.distance(&a, &b), 5.0);
        assert_eq!(Metric::InnerProduct.distance(&a, &b), -(4.0 + 12.0 + 9.0));
        assert_eq!(Metric::L1.distance(&a, &b), 7.0);
        let c = Metric::Cosine.distance(&[1.0, 0.0], &[0.0, 2.0]);
        assert!((c - 1.0).abs() < 1e-12);
        assert!(Metric::Cosine.distance(&[0.0, 0.0], &[1.0, 0.0]).is_nan());
    }

    #[test]
    fn opclass_names() {
        assert_eq!(Metric::from_opclass("vector_l2_ops"), Some(Metric::L2));
        assert_eq!(
            Metric::from_opclass("halfvec_cosine_ops"),
            Some(Metric::Cosine)
        );
        assert_eq!(
            Metric::from_opclass("sparsevec_ip_ops"),
            Some(Metric::InnerProduct)
        );
        assert_eq!(
            Metric::from_opclass("bit_hamming_ops"),
            Some(Metric::Hamming)
        );
        assert_eq!(Metric::from_opclass("vector_l1_ops"), Some(Metric::L1));
        assert_eq!(Metric::from_opclass("int4_ops"), None);
    }

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7C00).is_infinite());
    }

    #[test]
    fn fast_kernels_match_the_f64_ones() {
        let mut r = crate::inspect::ivfflat::SplitMix(7);
        for n in [0usize, 1, 7, 8, 9, 128, 131] {
            let v = |r: &mut crate::inspect::ivfflat::SplitMix| {
                (0..n)
                    .map(|_| (r.below(2000) as f32 - 1000.0) / 300.0)
                    .collect::<Vec<f32>>()
            };
            let (a, b) = (v(&mut r), v(&mut r));
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
            assert!(close(l2_squared_fast(&a, &b), l2_squared(&a, &b)), "{n}");
            assert!(close(l1_fast(&a, &b), Metric::L1.distance(&a, &b)), "{n}");
            let (d, q) = dot_norm_fast(&a, &b);
            assert!(close(d, dot(&a, &b)) && close(q, dot(&a, &a)), "{n}");
        }
        // Shorter of the two, like the f64 versions.
        assert_eq!(l2_squared_fast(&[1.0, 2.0], &[1.0]), 0.0);
    }

    #[test]
    fn distance_below_is_exact() {
        let mut r = crate::inspect::ivfflat::SplitMix(11);
        let mut v = |n: usize| {
            (0..n)
                .map(|_| (r.below(2000) as f32 - 1000.0) / 300.0)
                .collect::<Vec<f32>>()
        };
        for metric in [Metric::L2, Metric::L1, Metric::InnerProduct, Metric::Cosine] {
            for n in [1usize, 3, 16, 128, 1000] {
                let (a, b) = (v(n), v(n));
                let d = metric.distance(&a, &b);
                // Bars right at, just around and far from the distance.
                for bar in [d, d + 1e-12, d - 1e-12, d * (1.0 + 1e-9), d + 1.0, d - 1.0] {
                    assert_eq!(
                        metric.distance_below(&a, &b, bar),
                        d < bar,
                        "{metric:?} n {n} bar {bar} d {d}"
                    );
                }
            }
            let z = vec![0.0f32; 4];
            assert_eq!(
                metric.distance_below(&z, &z, 0.5),
                metric.distance(&z, &z) < 0.5
            );
        }
    }

    #[test]
    fn dense_decoding() {
        let mut p = vec![2u8, 0, 0, 0];
        p.extend_from_slice(&1.5f32.to_le_bytes());
        p.extend_from_slice(&(-2.0f32).to_le_bytes());
        assert_eq!(decode_dense(VectorType::Vector, &p), Some(vec![1.5, -2.0]));
        assert_eq!(decode_dense(VectorType::Vector, &p[..8]), None);
        let h = [1u8, 0, 0, 0, 0x00, 0x3C];
        assert_eq!(decode_dense(VectorType::HalfVec, &h), Some(vec![1.0]));
        assert_eq!(decode_dense(VectorType::Bit, &h), None);
        assert_eq!(value_dimensions(VectorType::Vector, &p), Some(2));
        let mut out = vec![9.0];
        assert!(decode_dense_into(VectorType::Vector, &p, &mut out));
        assert_eq!(out, vec![1.5, -2.0]);
        assert!(!decode_dense_into(VectorType::Vector, &p[..8], &mut out));
        assert!(decode_dense_into(VectorType::HalfVec, &h, &mut out));
        assert_eq!(out, vec![1.0]);
        assert!(!decode_dense_into(VectorType::SparseVec, &h, &mut out));
    }
}
