//! pgvector value types and distances, on plain slices.
//!
//! Values arrive as varlena payloads (header already stripped) copied out of
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
    }
}
