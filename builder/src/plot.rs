//! Line charts as SVG and PNG, for `cargo det bench`.
//!
//! A [`Chart`] is laid out once into a list of shapes ([`Shape`]) in pixel
//! coordinates; [`svg`] writes them as SVG text and [`png`] rasterizes
//! them (lines, dots, and text in a built-in 5×7 pixel font) into an RGB
//! PNG. No fonts, libraries or tools are needed, and the same data always
//! gives the same bytes.

use std::fmt::Write as _;
use std::io::Write as _;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::gpt::crc32;

/// One line of a chart.
pub struct Series {
    pub name: String,
    /// (x, y), both > 0 (both axes are logarithmic).
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (reference figures).
    pub dashed: bool,
}

/// A chart: log-log axes, one line per series, a dashed reference line
/// at `y = reference` if set.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub reference: Option<f64>,
}

type Rgb = [u8; 3];

const WIDTH: u32 = 720;
const HEIGHT: u32 = 480;
const BLACK: Rgb = [0, 0, 0];
const GREY: Rgb = [200, 200, 200];
const PALETTE: [Rgb; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
    [140, 86, 75],
];

/// Where text sits relative to its point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

enum Shape {
    Line {
        from: (f64, f64),
        to: (f64, f64),
        color: Rgb,
        width: u32,
        dashed: bool,
    },
    Dot {
        at: (f64, f64),
        color: Rgb,
    },
    Text {
        at: (f64, f64),
        text: String,
        anchor: Anchor,
        color: Rgb,
    },
}

/// Round-number ticks on a log axis over `[lo, hi]`: 1-2-5 steps per
/// decade when few decades, powers of ten otherwise.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10();
    let steps: &[f64] = if decades > 3.0 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut ticks = Vec::new();
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi * 1.0001 {
        for s in steps {
            let t = p * s;
            if t >= lo * 0.9999 && t <= hi * 1.0001 {
                ticks.push(t);
            }
        }
        p *= 10.0;
    }
    ticks
}

/// A compact label: 1K, 4M, 0.5, 16.
fn label(v: f64) -> String {
    let (v, suffix) = if v >= 1e6 && (v / 1e6).fract() == 0.0 {
        (v / 1e6, "M")
    } else if v >= 1e3 && (v / 1e3).fract() == 0.0 {
        (v / 1e3, "K")
    } else {
        (v, "")
    };
    if v.fract() == 0.0 {
        format!("{v:.0}{suffix}")
    } else {
        format!("{v}{suffix}")
    }
}

impl Chart {
    fn layout(&self) -> Vec<Shape> {
        let (left, right, top, bottom) = (80.0, WIDTH as f64 - 185.0, 60.0, HEIGHT as f64 - 60.0);
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let xs: Vec<f64> = pts().map(|p| p.0).filter(|v| *v > 0.0).collect();
        let mut ys: Vec<f64> = pts().map(|p| p.1).filter(|v| *v > 0.0).collect();
        ys.extend(self.reference);
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut x0, mut x1) = if xs.is_empty() {
            (1.0, 10.0)
        } else {
            (min(&xs), max(&xs))
        };
        let (mut y0, mut y1) = if ys.is_empty() {
            (1.0, 10.0)
        } else {
            (min(&ys), max(&ys))
        };
        if x1 <= x0 {
            (x0, x1) = (x0 / 2.0, x1 * 2.0);
        }
        // A little room above and below; around a reference line, at
        // least half to twice it.
        (y0, y1) = (y0 / 1.2, y1 * 1.2);
        if let Some(r) = self.reference {
            (y0, y1) = (y0.min(r / 2.0), y1.max(r * 2.0));
        }
        let px = |x: f64| left + (x / x0).ln() / (x1 / x0).ln() * (right - left);
        let py = |y: f64| bottom - (y / y0).ln() / (y1 / y0).ln() * (bottom - top);
        let mut s = Vec::new();
        let text = |at, text: &str, anchor| Shape::Text {
            at,
            text: text.to_string(),
            anchor,
            color: BLACK,
        };
        s.push(text(
            ((left + right) / 2.0, 25.0),
            &self.title,
            Anchor::Middle,
        ));
        // Grid and ticks.
        let mut xticks: Vec<f64> = xs.clone();
        xticks.sort_by(f64::total_cmp);
        xticks.dedup();
        for &t in &xticks {
            s.push(Shape::Line {
                from: (px(t), top),
                to: (px(t), bottom),
                color: GREY,
                width: 1,
                dashed: false,
            });
            s.push(text((px(t), bottom + 18.0), &label(t), Anchor::Middle));
        }
        for t in log_ticks(y0, y1) {
            s.push(Shape::Line {
                from: (left, py(t)),
                to: (right, py(t)),
                color: GREY,
                width: 1,
                dashed: false,
            });
            s.push(text((left - 8.0, py(t) + 4.0), &label(t), Anchor::End));
        }
        // Axes.
        for (from, to) in [
            ((left, bottom), (right, bottom)),
            ((left, top), (left, bottom)),
        ] {
            s.push(Shape::Line {
                from,
                to,
                color: BLACK,
                width: 1,
                dashed: false,
            });
        }
        s.push(text(
            ((left + right) / 2.0, bottom + 42.0),
            &self.x_label,
            Anchor::Middle,
        ));
        s.push(text((left, top - 10.0), &self.y_label, Anchor::Start));
        if let Some(r) = self.reference {
            s.push(Shape::Line {
                from: (left, py(r)),
                to: (right, py(r)),
                color: BLACK,
                width: 1,
                dashed: true,
            });
        }
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let p: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(x, y)| *x > 0.0 && *y > 0.0)
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            for w in p.windows(2) {
                s.push(Shape::Line {
                    from: w[0],
                    to: w[1],
                    color,
                    width: 2,
                    dashed: series.dashed,
                });
            }
            for &at in &p {
                s.push(Shape::Dot { at, color });
            }
            let ly = top + 10.0 + 22.0 * i as f64;
            s.push(Shape::Line {
                from: (right + 15.0, ly),
                to: (right + 40.0, ly),
                color,
                width: 2,
                dashed: series.dashed,
            });
            s.push(text((right + 46.0, ly + 4.0), &series.name, Anchor::Start));
        }
        s
    }
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for shape in chart.layout() {
        match shape {
            Shape::Line {
                from,
                to,
                color,
                width,
                dashed,
            } => {
                let _ = writeln!(
                    o,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{width}"{}/>"#,
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    hex(color),
                    if dashed {
                        r#" stroke-dasharray="6 4""#
                    } else {
                        ""
                    }
                );
            }
            Shape::Dot { at, color } => {
                let _ = writeln!(
                    o,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                    at.0,
                    at.1,
                    hex(color)
                );
            }
            Shape::Text {
                at,
                text,
                anchor,
                color,
            } => {
                let a = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let _ = writeln!(
                    o,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="{a}" fill="{}">{}</text>"#,
                    at.0,
                    at.1,
                    hex(color),
                    escape(&text)
                );
            }
        }
    }
    o.push_str("</svg>\n");
    o
}

/// An RGB canvas.
struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            px: vec![255; (WIDTH * HEIGHT * 3) as usize],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as u32) < WIDTH && (y as u32) < HEIGHT {
            let i = ((y as u32 * WIDTH + x as u32) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn square(&mut self, x: i64, y: i64, size: u32, c: Rgb) {
        let lo = -(size as i64 - 1) / 2;
        for dy in lo..lo + size as i64 {
            for dx in lo..lo + size as i64 {
                self.set(x + dx, y + dy, c);
            }
        }
    }

    fn line(&mut self, from: (f64, f64), to: (f64, f64), c: Rgb, width: u32, dashed: bool) {
        let steps = (to.0 - from.0)
            .abs()
            .max((to.1 - from.1).abs())
            .ceil()
            .max(1.0) as i64;
        for i in 0..=steps {
            if dashed && (i / 5) % 2 == 1 {
                continue;
            }
            let t = i as f64 / steps as f64;
            let x = from.0 + (to.0 - from.0) * t;
            let y = from.1 + (to.1 - from.1) * t;
            self.square(x.round() as i64, y.round() as i64, width, c);
        }
    }

    /// Text in the 5×7 font at scale 2 (10×14 per glyph, 12 advance);
    /// `at.1` is the baseline.
    fn text(&mut self, at: (f64, f64), text: &str, anchor: Anchor, c: Rgb) {
        let width = text.chars().count() as f64 * 12.0;
        let x0 = match anchor {
            Anchor::Start => at.0,
            Anchor::Middle => at.0 - width / 2.0,
            Anchor::End => at.0 - width,
        }
        .round() as i64;
        let y0 = at.1.round() as i64 - 13;
        for (n, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let (x, y) = (x0 + n as i64 * 12 + col * 2, y0 + r as i64 * 2);
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + dx, y + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// The chart as a PNG file's bytes.
pub fn png(chart: &Chart) -> Vec<u8> {
    let mut c = Canvas::new();
    for shape in chart.layout() {
        match shape {
            Shape::Line {
                from,
                to,
                color,
                width,
                dashed,
            } => c.line(from, to, color, width, dashed),
            Shape::Dot { at, color } => {
                c.square(at.0.round() as i64, at.1.round() as i64, 7, color)
            }
            Shape::Text {
                at,
                text,
                anchor,
                color,
            } => c.text(at, &text, anchor, color),
        }
    }
    encode_png(&c.px)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// 8-bit RGB, no interlace, filter 0 on every row.
fn encode_png(rgb: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&WIDTH.to_be_bytes());
    ihdr.extend_from_slice(&HEIGHT.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut raw = Vec::with_capacity(rgb.len() + HEIGHT as usize);
    for row in rgb.chunks((WIDTH * 3) as usize) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
    z.write_all(&raw).expect("writing to memory");
    let data = z.finish().expect("writing to memory");
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// 5×7 glyphs, one byte per row, bit 4 leftmost. Lowercase letters are
/// drawn as capitals; anything unknown as a small box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '×' | '*' => [0, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0],
        '÷' => [0, 0x04, 0, 0x1F, 0, 0x04, 0],
        '²' => [0x0C, 0x02, 0x04, 0x0E, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        _ => [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Chart {
        Chart {
            title: "lu: det ÷ pthread".into(),
            x_label: "matrix side".into(),
            y_label: "overhead (×)".into(),
            series: vec![
                Series {
                    name: "N=1".into(),
                    points: vec![(16.0, 20.0), (64.0, 5.0), (1024.0, 1.1)],
                    dashed: false,
                },
                Series {
                    name: "N=2".into(),
                    points: vec![(16.0, 30.0), (64.0, 8.0), (1024.0, 1.3)],
                    dashed: true,
                },
            ],
            reference: Some(1.0),
        }
    }

    #[test]
    fn svg_has_every_series_and_escapes_text() {
        let mut c = sample();
        c.title = "a < b & c".into();
        let s = svg(&c);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains(">N=1<") && s.contains(">N=2<"));
        assert!(s.contains("a &lt; b &amp; c"));
        assert!(s.contains(">1024<"), "x ticks are the sizes measured");
    }

    #[test]
    fn png_is_well_formed_and_reproducible() {
        let a = png(&sample());
        assert_eq!(&a[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&a[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(a[16..20].try_into().unwrap()), WIDTH);
        // IHDR's CRC covers its type and data.
        assert_eq!(
            u32::from_be_bytes(a[29..33].try_into().unwrap()),
            crc32(&a[12..29])
        );
        assert!(a.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        assert_eq!(a, png(&sample()));
    }

    #[test]
    fn empty_chart_does_not_panic() {
        let c = Chart {
            title: "empty".into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            reference: None,
        };
        assert!(svg(&c).contains("empty"));
        assert!(!png(&c).is_empty());
    }

    #[test]
    fn labels_are_compact() {
        assert_eq!(label(1000.0), "1K");
        assert_eq!(label(1024.0), "1024");
        assert_eq!(label(4_000_000.0), "4M");
        assert_eq!(label(0.5), "0.5");
        assert_eq!(label(16.0), "16");
        assert_eq!(log_ticks(0.5, 20.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
    }
}
