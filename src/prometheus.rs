//! The Prometheus text exposition format (version 0.0.4): families with
//! `# HELP` and `# TYPE` lines, samples with escaped label values. Pure
//! Rust; `api::stats` fills the families from the statistics view and the
//! shared-memory counters. Labels are rendered once per index and shared by
//! its samples: a scrape of 100 indexes writes some 2,000 lines.

use std::fmt::Write;

/// A rendered label set, `k="v",k2="v2"` (values escaped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(String);

impl Labels {
    pub fn new(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::default();
        for (k, v) in pairs {
            l.add(k, v);
        }
        l
    }

    /// These labels and one more.
    pub fn with(&self, key: &str, value: &str) -> Labels {
        let mut l = self.clone();
        l.add(key, value);
        l
    }

    fn add(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(key);
        self.0.push_str("=\"");
        escape_into(&mut self.0, value);
        self.0.push('"');
    }
}

/// A metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    pub samples: Vec<(Labels, f64)>,
}

impl Family {
    pub fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }
}

/// A label value as the format wants it: backslash, double quote and
/// newline escaped.
fn escape_into(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The families as text; a family without samples is left out (a HELP
/// line with no sample is legal but says nothing).
pub fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.iter().map(|f| f.samples.len() * 128).sum());
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.0.is_empty() {
                out.push('{');
                out.push_str(&labels.0);
                out.push('}');
            }
            out.push(' ');
            write_number(&mut out, *value);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_help_type_and_escaped_labels() {
        let mut f = Family::new("ruvector_index_size_bytes", "gauge", "Size of the index.");
        let l = Labels::new(&[("index", "we\"ird\\name\nx")]);
        f.push(l.with("op", "insert"), 8192.0);
        f.push(Labels::default(), 0.5);
        f.push(Labels::default(), f64::NAN);
        let empty = Family::new("ruvector_nothing", "gauge", "Nothing.");
        let text = render(&[f, empty]);
        assert_eq!(
            text,
            "# HELP ruvector_index_size_bytes Size of the index.\n\
             # TYPE ruvector_index_size_bytes gauge\n\
             ruvector_index_size_bytes{index=\"we\\\"ird\\\\name\\nx\",op=\"insert\"} 8192\n\
             ruvector_index_size_bytes 0.5\n\
             ruvector_index_size_bytes NaN\n"
        );
    }
}
