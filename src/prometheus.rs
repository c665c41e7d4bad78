//! The Prometheus text exposition format (version 0.0.4): families with
//! `# HELP` and `# TYPE` lines, samples with escaped label values. Pure
//! Rust; `api::stats` fills the families from the statistics view and the
//! shared-memory counters.

/// A metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
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

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

/// A label value as the format wants it: backslash, double quote and
/// newline escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The families as text; a family without samples is left out (a HELP
/// line with no sample is legal but says nothing).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        ));
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                let l: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                out.push_str(&format!("{{{}}}", l.join(",")));
            }
            out.push_str(&format!(" {}\n", number(*value)));
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
        f.push(vec![("index", "we\"ird\\name".into())], 8192.0);
        f.push(vec![], 0.5);
        let empty = Family::new("ruvector_nothing", "gauge", "Nothing.");
        let text = render(&[f, empty]);
        assert_eq!(
            text,
            "# HELP ruvector_index_size_bytes Size of the index.\n\
             # TYPE ruvector_index_size_bytes gauge\n\
             ruvector_index_size_bytes{index=\"we\\\"ird\\\\name\"} 8192\n\
             ruvector_index_size_bytes 0.5\n"
        );
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(escape("a\nb"), "a\\nb");
    }
}
