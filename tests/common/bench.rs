//! What every benchmark needs: its command line (what follows `--` in `cargo bench --bench NAME --
//! ...`, as `--name value` options, `--flag`s and positional numbers) and the median of its timings.
//! One parser for every benchmark, so that they all refuse an unknown option and a bad number the
//! same way.

use std::collections::{HashMap, HashSet};

/// A benchmark's arguments, checked against the options it declares.
pub struct BenchArgs {
    /// `--name` -> its value, for the options that take one.
    values: HashMap<String, String>,
    /// The flags given.
    flags: HashSet<String>,
    /// Arguments that are no option, in order.
    positional: Vec<String>,
}

impl BenchArgs {
    /// Parses the process's arguments. `with_value` and `flags` name the options the benchmark knows
    /// (`--name`); `usage` is printed for `-h`/`--help`, which then exits. `--bench`, which
    /// `cargo bench` passes to every benchmark, is ignored.
    pub fn parse(usage: &str, with_value: &[&str], flags: &[&str]) -> Result<Self, String> {
        Self::parse_from(std::env::args().skip(1), usage, with_value, flags)
    }

    /// [`BenchArgs::parse`] over given arguments.
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        usage: &str,
        with_value: &[&str],
        flags: &[&str],
    ) -> Result<Self, String> {
        let mut parsed = BenchArgs {
            values: HashMap::new(),
            flags: HashSet::new(),
            positional: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "-h" | "--help" => {
                    println!("{usage}");
                    std::process::exit(0);
                }
                name if with_value.contains(&name) => {
                    let value = args.next().ok_or(format!("{name} needs a value (see --help)"))?;
                    parsed.values.insert(arg, value);
                }
                name if flags.contains(&name) => {
                    parsed.flags.insert(arg);
                }
                name if name.starts_with('-') => return Err(format!("unknown option `{name}` (see --help)")),
                _ => parsed.positional.push(arg),
            }
        }
        Ok(parsed)
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }

    /// The whole number given for `--name` (at least `min`), else `default`.
    pub fn number(&self, name: &str, default: usize, min: usize) -> Result<usize, String> {
        self.values
            .get(name)
            .map_or(Ok(default), |v| parse_number(name, v, min))
    }

    /// The comma-separated whole numbers given for `--name` (each at least `min`), else `default`.
    pub fn numbers(&self, name: &str, default: &[usize], min: usize) -> Result<Vec<usize>, String> {
        match self.values.get(name) {
            None => Ok(default.to_vec()),
            Some(list) => list.split(',').map(|v| parse_number(name, v.trim(), min)).collect(),
        }
    }

    /// The `index`-th positional argument as a whole number (at least `min`), else `default`.
    pub fn positional(&self, index: usize, default: usize, min: usize) -> Result<usize, String> {
        self.positional.get(index).map_or(Ok(default), |v| {
            parse_number(&format!("argument {}", index + 1), v, min)
        })
    }
}

/// `value` as a whole number of at least `min`, or an error naming `name` and the value.
fn parse_number(name: &str, value: &str, min: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= min)
        .ok_or(format!("{name}: `{value}` is not a whole number of at least {min}"))
}

/// The median of some measurements (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "a median of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
