//! Build options: what pgvector builds an index with (`m` and
//! `ef_construction` for HNSW, `lists` for IVFFlat), the candidates a trial
//! may try, the bounds the user allows the worker to raise them to, and
//! the size a rebuild with other options needs.

use serde::{Deserialize, Serialize};

/// pgvector's defaults (`HNSW_DEFAULT_M`, `HNSW_DEFAULT_EF_CONSTRUCTION`,
/// `IVFFLAT_DEFAULT_LISTS`) and limits.
pub const DEFAULT_M: u16 = 16;
pub const DEFAULT_EF_CONSTRUCTION: u16 = 64;
pub const DEFAULT_LISTS: u32 = 100;
pub const MAX_M: u16 = 100;
pub const MAX_EF_CONSTRUCTION: u16 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BuildOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<u32>,
}

impl BuildOptions {
    pub fn hnsw(m: u16, ef_construction: u16) -> BuildOptions {
        BuildOptions {
            m: Some(m),
            ef_construction: Some(ef_construction),
            lists: None,
        }
    }

    pub fn ivfflat(lists: u32) -> BuildOptions {
        BuildOptions {
            lists: Some(lists),
            ..Default::default()
        }
    }

    /// `(name, value)` storage options, for `CREATE INDEX ... WITH`.
    pub fn storage(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(m) = self.m {
            v.push(("m", m.to_string()));
        }
        if let Some(e) = self.ef_construction {
            v.push(("ef_construction", e.to_string()));
        }
        if let Some(l) = self.lists {
            v.push(("lists", l.to_string()));
        }
        v
    }

    /// Checks explicit options against pgvector's ranges.
    pub fn check(&self) -> Result<(), String> {
        if let Some(m) = self.m {
            if !(2..=MAX_M).contains(&m) {
                return Err(format!("m must be between 2 and {MAX_M}, got {m}"));
            }
        }
        if let Some(e) = self.ef_construction {
            if !(4..=MAX_EF_CONSTRUCTION).contains(&e) {
                return Err(format!(
                    "ef_construction must be between 4 and {MAX_EF_CONSTRUCTION}, got {e}"
                ));
            }
            if let Some(m) = self.m {
                if (e as u32) < 2 * m as u32 {
                    return Err(format!(
                        "ef_construction ({e}) must be at least twice m ({m})"
                    ));
                }
            }
        }
        if let Some(l) = self.lists {
            if !(1..=32_768).contains(&l) {
                return Err(format!("lists must be between 1 and 32768, got {l}"));
            }
        }
        Ok(())
    }
}

/// How far the worker may change build options by itself
/// (`ruvector.dag_healing_allow_option_changes`, or a policy's
/// `allow_option_changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allowance {
    /// Never: a cause that needs other options is left to a person.
    None,
    /// Up to pgvector's defaults (`m = 16`, `ef_construction = 64`);
    /// `lists` for the table's size.
    UpToDefaults,
    /// Any candidate.
    Any,
}

impl Allowance {
    pub fn parse(s: &str) -> Result<Allowance, String> {
        match s.trim() {
            "none" => Ok(Allowance::None),
            "up_to_defaults" | "" => Ok(Allowance::UpToDefaults),
            "any" => Ok(Allowance::Any),
            o => Err(format!(
                "allow_option_changes must be none, up_to_defaults or any, got '{o}'"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Allowance::None => "none",
            Allowance::UpToDefaults => "up_to_defaults",
            Allowance::Any => "any",
        }
    }

    /// Whether the worker may build HNSW with `(m, ef_construction)` when the
    /// index has `current`.
    pub fn allows(&self, current: (u16, u16), m: u16, ef: u16) -> bool {
        match self {
            Allowance::None => (m, ef) == current,
            Allowance::UpToDefaults => {
                m <= DEFAULT_M.max(current.0) && ef <= DEFAULT_EF_CONSTRUCTION.max(current.1)
            }
            Allowance::Any => true,
        }
    }
}

/// HNSW options a trial tries, cheapest first: more neighbours cost
/// storage on every element and build time, a larger `ef_construction`
/// only build time. Never below what the index has; pgvector requires
/// `ef_construction >= 2 m`.
pub fn hnsw_candidates(current: (u16, u16)) -> Vec<(u16, u16)> {
    let (cm, ce) = current;
    let mut out: Vec<(u16, u16)> = [(8, 32), (12, 48), (16, 64), (24, 96), (32, 128), (48, 200)]
        .into_iter()
        .map(|(m, e): (u16, u16)| {
            let m = m.max(cm);
            (m, e.max(ce).max(2 * m))
        })
        .filter(|c| *c != current)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Bytes of one HNSW element of `dims` float dimensions at `m`: the
/// element tuple (header, ten heap TIDs, the value) and its neighbour
/// tuple, `(level + 2) m` six-byte TIDs, with the expected number of upper
/// levels `1 / (m - 1)` (levels are geometric with factor `1/m`), plus
/// line pointers.
pub fn hnsw_element_bytes(dims: u32, m: u16) -> f64 {
    let m = m.max(2) as f64;
    let element = 8.0 + 60.0 + 8.0 + 8.0 + 4.0 * dims as f64;
    let levels = 1.0 / (m - 1.0);
    let neighbours = 4.0 + 6.0 * m * (2.0 + levels);
    element + neighbours + 8.0
}

/// The size a rebuild at `new_m` needs, from the index's size at `old_m`.
pub fn hnsw_rebuilt_bytes(bytes: u64, dims: u32, old_m: u16, new_m: u16) -> u64 {
    let r = hnsw_element_bytes(dims, new_m) / hnsw_element_bytes(dims, old_m);
    (bytes as f64 * r).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_cheap_and_never_go_below() {
        assert_eq!(
            hnsw_candidates((2, 4)),
            vec![(8, 32), (12, 48), (16, 64), (24, 96), (32, 128), (48, 200)]
        );
        // The defaults themselves: only larger candidates.
        assert_eq!(
            hnsw_candidates((16, 64)),
            vec![(24, 96), (32, 128), (48, 200)]
        );
        // ef_construction stays at least twice m.
        assert!(hnsw_candidates((40, 80)).iter().all(|(m, e)| *e >= 2 * *m));
    }

    #[test]
    fn allowances() {
        let a = Allowance::UpToDefaults;
        assert!(a.allows((2, 4), 16, 64));
        assert!(!a.allows((2, 4), 24, 96));
        assert!(!a.allows((16, 64), 16, 96));
        // An index already above the defaults may be rebuilt as it is.
        assert!(a.allows((32, 128), 32, 128));
        assert!(!Allowance::None.allows((2, 4), 8, 32));
        assert!(Allowance::Any.allows((2, 4), 48, 200));
        assert_eq!(Allowance::parse("any"), Ok(Allowance::Any));
        assert!(Allowance::parse("more").is_err());
    }

    #[test]
    fn raising_m_costs_storage() {
        // m = 2 -> 16 on 8 dimensions: about twice the size.
        let grown = hnsw_rebuilt_bytes(1_000_000, 8, 2, 16);
        assert!(grown > 1_800_000 && grown < 2_200_000, "{grown}");
        // On 384 dimensions the value dominates.
        let big = hnsw_rebuilt_bytes(1_000_000, 384, 8, 16);
        assert!(big > 1_050_000 && big < 1_300_000, "{big}");
        assert_eq!(hnsw_rebuilt_bytes(1_000, 8, 16, 16), 1_000);
    }

    #[test]
    fn explicit_options_are_checked() {
        assert!(BuildOptions::hnsw(16, 64).check().is_ok());
        assert!(BuildOptions::hnsw(16, 20).check().is_err());
        assert!(BuildOptions::hnsw(1, 64).check().is_err());
        assert!(BuildOptions::ivfflat(0).check().is_err());
        assert_eq!(
            BuildOptions::hnsw(8, 32).storage(),
            vec![
                ("m", "8".to_string()),
                ("ef_construction", "32".to_string())
            ]
        );
    }
}
