//! The output of a run: one JSON line (fields in a fixed order, starting with
//! `"scenario"`), then, unless `--json`, a two-column table for people.

use serde_json::{Map, Value};

/// A summary being built: JSON fields and the table rows that show some of them.
pub struct Report {
    fields: Map<String, Value>,
    rows: Vec<(String, String)>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        let mut fields = Map::new();
        fields.insert("scenario".into(), Value::from(scenario));
        Report { fields, rows: Vec::new() }
    }

    /// A JSON field only.
    pub fn field(&mut self, key: &str, value: impl Into<Value>) -> &mut Report {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// A JSON field and a table row showing it.
    pub fn shown(&mut self, key: &str, label: &str, value: impl Into<Value>) -> &mut Report {
        let value = value.into();
        self.rows.push((label.into(), human(&value)));
        self.fields.insert(key.into(), value);
        self
    }

    /// Appends `other`'s fields (but its scenario) and rows.
    pub fn merge(&mut self, other: Report) -> &mut Report {
        for (k, v) in other.fields {
            if k != "scenario" {
                self.fields.insert(k, v);
            }
        }
        self.rows.extend(other.rows);
        self
    }

    /// A field's value (null if absent).
    #[must_use]
    pub fn fields_value(&self, key: &str) -> Value {
        self.fields.get(key).cloned().unwrap_or(Value::Null)
    }

    /// The JSON line.
    #[must_use]
    pub fn line(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (label, value) in &self.rows {
            out.push_str(&format!("  {label:<width$}  {value}\n"));
        }
        out
    }

    pub fn print(&self, json_only: bool) {
        println!("{}", self.line());
        if !json_only {
            print!("{}", self.table());
        }
    }
}

/// A value for the table: numbers with thousands separators, null as "-".
fn human(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(i), _) => group(i),
            (None, Some(f)) if f.abs() >= 1000.0 => group(f.round() as u64),
            (None, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        h => h,
    };
    let mut out = digits[..head].to_owned();
    for chunk in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.extend(chunk.iter().map(|&b| b as char));
    }
    out
}

/// Rounds to `digits` decimals (for stable, short JSON).
#[must_use]
pub fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

/// Nanoseconds as microseconds with one decimal, or null.
#[must_use]
pub fn us(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::from(round(ns as f64 / 1000.0, 1)))
}

/// An optional float, rounded, or null.
#[must_use]
pub fn opt(x: Option<f64>, digits: i32) -> Value {
    x.filter(|x| x.is_finite()).map_or(Value::Null, |x| Value::from(round(x, digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_starts_with_the_scenario_and_keeps_field_order() {
        let mut r = Report::new("fanout");
        r.shown("received", "received", 2_000_000u64).field("lost", 0u64).shown(
            "p99_us",
            "p99 µs",
            us(Some(1_234_567)),
        );
        r.shown("server_cpu_us_per_msg", "server CPU µs/msg", opt(None, 3));
        assert_eq!(
            r.line(),
            r#"{"scenario":"fanout","received":2000000,"lost":0,"p99_us":1234.6,"server_cpu_us_per_msg":null}"#
        );
        let table = r.table();
        assert!(table.contains("received           2,000,000"), "{table}");
        assert!(table.contains("p99 µs"), "{table}");
        assert!(table.contains("1,235"), "{table}");
        assert!(table.lines().last().unwrap().ends_with('-'), "{table}");
    }

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(human(&Value::from(0.25)), "0.25");
        assert_eq!(opt(Some(f64::NAN), 2), Value::Null);
        assert_eq!(us(None), Value::Null);
    }
}
