//! The demos' command line, the same for both versions:
//!
//! ```text
//! <md5|qsort|matmult|lu|gauss> [--size N] [--cpus N] [--reps N] [--seed N] [--fixed]
//! ```
//!
//! `--size` is the string length (md5), the element count (qsort) or the
//! matrix side (matmult, lu, gauss). `--cpus` is the N of the thesis: md5
//! uses N + 1 workers, qsort forks log2(2N) levels deep; the matrix demos
//! fork per block whatever N is. `--reps` runs that many inputs (seeds
//! derived from `--seed`) and hashes all results. `--fixed` is gauss's
//! corrected join.

use crate::matrix::{LU_GRID, MATMULT_GRID};
use crate::md5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demo {
    Md5,
    Qsort,
    Matmult,
    Lu,
    Gauss,
}

impl Demo {
    pub const ALL: [Demo; 5] = [Demo::Md5, Demo::Qsort, Demo::Matmult, Demo::Lu, Demo::Gauss];

    pub fn name(self) -> &'static str {
        match self {
            Demo::Md5 => "md5",
            Demo::Qsort => "qsort",
            Demo::Matmult => "matmult",
            Demo::Lu => "lu",
            Demo::Gauss => "gauss",
        }
    }

    pub fn from_name(name: &str) -> Option<Demo> {
        Demo::ALL.into_iter().find(|d| d.name() == name)
    }

    /// A size that runs in about a second on the 2-CPU TCG guest.
    pub fn default_size(self) -> u64 {
        match self {
            Demo::Md5 => 4,
            Demo::Qsort => 100_000,
            Demo::Matmult => 128,
            Demo::Lu => 128,
            Demo::Gauss => 16,
        }
    }

    /// Why `size` is not a valid size, if it is not.
    pub fn check_size(self, size: u64) -> Result<(), &'static str> {
        let ok = match self {
            Demo::Md5 => (1..=md5::MAX_LEN as u64).contains(&size),
            Demo::Qsort => (1..=1 << 28).contains(&size),
            Demo::Matmult => {
                size >= MATMULT_GRID as u64
                    && size.is_multiple_of(MATMULT_GRID as u64)
                    && size <= 8192
            }
            Demo::Lu => {
                size >= LU_GRID as u64 && size.is_multiple_of(LU_GRID as u64) && size <= 8192
            }
            Demo::Gauss => (2..=2048).contains(&size),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Demo::Md5 => "md5 --size is the string length, 1 to 12",
            Demo::Qsort => "qsort --size is the element count, 1 to 2^28",
            Demo::Matmult => "matmult --size must be a multiple of 8, 8 to 8192",
            Demo::Lu => "lu --size must be a multiple of 16, 16 to 8192",
            Demo::Gauss => "gauss --size is the row count, 2 to 2048",
        })
    }
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub demo: Demo,
    pub size: u64,
    /// 0 until the program resolves it (the pthread version from its CPU
    /// affinity; a deterministic program cannot ask and is told).
    pub cpus: u32,
    pub reps: u64,
    pub seed: u64,
    pub fixed: bool,
}

/// The usage line, for errors.
pub const USAGE: &str =
    "usage: <md5|qsort|matmult|lu|gauss> [--size N] [--cpus N] [--reps N] [--seed N] [--fixed]";

impl Params {
    /// Parses the arguments after the program name.
    pub fn parse<'a>(mut args: impl Iterator<Item = &'a str>) -> Result<Params, &'static str> {
        let demo = args.next().ok_or(USAGE)?;
        let demo = Demo::from_name(demo).ok_or("unknown demo (md5, qsort, matmult, lu, gauss)")?;
        let mut p = Params {
            demo,
            size: demo.default_size(),
            cpus: 0,
            reps: 1,
            seed: 1,
            fixed: false,
        };
        while let Some(flag) = args.next() {
            if flag == "--fixed" {
                if demo != Demo::Gauss {
                    return Err("--fixed is for gauss only");
                }
                p.fixed = true;
                continue;
            }
            let value = args.next().ok_or("an option is missing its value")?;
            let n: u64 = value
                .parse()
                .map_err(|_| "option values are decimal numbers")?;
            match flag {
                "--size" => p.size = n,
                "--cpus" => {
                    p.cpus = u32::try_from(n)
                        .ok()
                        .filter(|c| (1..=256).contains(c))
                        .ok_or("--cpus must be 1 to 256")?
                }
                "--reps" if (1..=1_000_000).contains(&n) => p.reps = n,
                "--reps" => return Err("--reps must be 1 to 1000000"),
                "--seed" => p.seed = n,
                _ => return Err(USAGE),
            }
        }
        demo.check_size(p.size)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Params, &'static str> {
        Params::parse(s.split_whitespace())
    }

    #[test]
    fn defaults_and_options() {
        let p = parse("qsort").unwrap();
        assert_eq!(
            (p.size, p.cpus, p.reps, p.seed, p.fixed),
            (100_000, 0, 1, 1, false)
        );
        let p = parse("gauss --size 16 --cpus 2 --reps 3 --seed 9 --fixed").unwrap();
        assert_eq!(
            (p.size, p.cpus, p.reps, p.seed, p.fixed),
            (16, 2, 3, 9, true)
        );
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("sort").is_err());
        assert!(parse("matmult --size 100").is_err());
        assert!(parse("lu --size 8").is_err());
        assert!(parse("md5 --size 13").is_err());
        assert!(parse("md5 --fixed").is_err());
        assert!(parse("md5 --cpus 0").is_err());
        assert!(parse("md5 --size").is_err());
        assert!(parse("md5 --size x").is_err());
        assert!(parse("md5 --bogus 1").is_err());
    }
}
