//! `ruvector.dag_healing_maintenance_window`: when automatic repairs may
//! start. Empty = always. Otherwise comma-separated ranges, each a day or
//! day range and a time range, in the server's time zone:
//! `'Sat 01:00-05:00'`, `'Mon-Fri 22:00-02:00'` (a range may cross
//! midnight: it then ends the next day), `'daily 03:00-04:00'`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Days the range starts on, bit 0 = Monday.
    days: u8,
    start: u32,
    end: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Option<u8> {
    let s = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| s.len() >= 3 && s.starts_with(d) && d.starts_with(&s[..3]))
        .map(|i| i as u8)
}

fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn days(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    if s == "daily" || s == "*" {
        return Some(0x7f);
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (day(a)?, day(b)?);
            let mut bits = 0u8;
            let mut d = a;
            loop {
                bits |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Some(bits)
        }
        None => Some(1 << day(&s)?),
    }
}

/// Parses the setting; `Ok(empty)` means always.
pub fn parse(s: &str) -> Result<Vec<Range>, String> {
    let bad = |part: &str| {
        format!(
            "invalid maintenance window \"{part}\": expected for example 'Sat 01:00-05:00', 'Mon-Fri 22:00-02:00' or 'daily 03:00-04:00'"
        )
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (d, t) = part
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(part))?;
        let (a, b) = t.trim().split_once('-').ok_or_else(|| bad(part))?;
        let r = Range {
            days: days(d).ok_or_else(|| bad(part))?,
            start: minutes(a).ok_or_else(|| bad(part))?,
            end: minutes(b).ok_or_else(|| bad(part))?,
        };
        if r.start == r.end {
            return Err(bad(part));
        }
        out.push(r);
    }
    Ok(out)
}

/// Whether `weekday` (0 = Monday) at `minute` of the day is inside.
pub fn inside(ranges: &[Range], weekday: u8, minute: u32) -> bool {
    if ranges.is_empty() {
        return true;
    }
    let yesterday = (weekday + 6) % 7;
    ranges.iter().any(|r| {
        if r.start < r.end {
            r.days & (1 << weekday) != 0 && (r.start..r.end).contains(&minute)
        } else {
            // Crosses midnight: the evening part today, the morning part
            // of a range that started yesterday.
            (r.days & (1 << weekday) != 0 && minute >= r.start)
                || (r.days & (1 << yesterday) != 0 && minute < r.end)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert!(parse("").unwrap().is_empty());
        assert!(inside(&[], 3, 100));
        let w = parse("Sat 01:00-05:00").unwrap();
        assert!(inside(&w, 5, 60));
        assert!(!inside(&w, 5, 300));
        assert!(!inside(&w, 4, 60));
        let w = parse("Mon-Fri 22:00-02:00, sunday 12:00-13:00").unwrap();
        assert!(inside(&w, 0, 23 * 60));
        assert!(inside(&w, 1, 60), "Tuesday 01:00 belongs to Monday's night");
        assert!(
            inside(&w, 5, 60),
            "Saturday 01:00 belongs to Friday's night"
        );
        assert!(
            !inside(&w, 0, 60),
            "Monday 01:00: Sunday has no night range"
        );
        assert!(inside(&w, 6, 12 * 60 + 30));
        let w = parse("daily 03:00-04:00").unwrap();
        assert!((0..7).all(|d| inside(&w, d, 200)));
        let w = parse("Fri-Mon 00:00-24:00").unwrap();
        assert!(inside(&w, 6, 10) && inside(&w, 0, 10) && !inside(&w, 2, 10));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "Sat",
            "Sat 1-5",
            "Funday 01:00-02:00",
            "Sat 25:00-26:00",
            "Sat 01:00-01:00",
            "Sa 01:00-02:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
