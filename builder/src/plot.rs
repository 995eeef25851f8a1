//! Line charts as SVG and PNG, for `cargo det bench`.
//!
//! A [`Chart`] is laid out once into a list of shapes ([`Shape`]) in pixel
//! coordinates; [`svg`] writes them as SVG text and [`png`] draws them
//! with `embedded-graphics` (integer lines and circles, its 7×13 Latin-1
//! bitmap font) into an RGB image that the `png` crate encodes. No fonts
//! or tools are read from the host, and the same data always gives the
//! same bytes.

use std::convert::Infallible;
use std::fmt::Write as _;

use embedded_graphics::mono_font::{iso_8859_1::FONT_7X13, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};

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
        // A thin line: grid, axes and the reference.
        let thin = |from, to, color, dashed| Shape::Line {
            from,
            to,
            color,
            width: 1,
            dashed,
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
            s.push(thin((px(t), top), (px(t), bottom), GREY, false));
            s.push(text((px(t), bottom + 18.0), &label(t), Anchor::Middle));
        }
        for t in log_ticks(y0, y1) {
            s.push(thin((left, py(t)), (right, py(t)), GREY, false));
            s.push(text((left - 8.0, py(t) + 4.0), &label(t), Anchor::End));
        }
        // Axes.
        for (from, to) in [
            ((left, bottom), (right, bottom)),
            ((left, top), (left, bottom)),
        ] {
            s.push(thin(from, to, BLACK, false));
        }
        s.push(text(
            ((left + right) / 2.0, bottom + 42.0),
            &self.x_label,
            Anchor::Middle,
        ));
        s.push(text((left, top - 10.0), &self.y_label, Anchor::Start));
        if let Some(r) = self.reference {
            s.push(thin((left, py(r)), (right, py(r)), BLACK, true));
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

/// An RGB image, row by row, that embedded-graphics draws into.
struct Canvas(Vec<u8>);

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if let (Ok(x @ 0..WIDTH), Ok(y @ 0..HEIGHT)) = (u32::try_from(p.x), u32::try_from(p.y))
            {
                let i = ((y * WIDTH + x) * 3) as usize;
                self.0[i..i + 3].copy_from_slice(&[c.r(), c.g(), c.b()]);
            }
        }
        Ok(())
    }
}

fn point((x, y): (f64, f64)) -> Point {
    Point::new(x.round() as i32, y.round() as i32)
}

fn rgb(c: Rgb) -> Rgb888 {
    Rgb888::new(c[0], c[1], c[2])
}

/// The drawn pieces of a line: all of it, or 6-pixel dashes 4 pixels
/// apart (the SVG's `stroke-dasharray="6 4"`).
fn dashes(from: (f64, f64), to: (f64, f64), dashed: bool) -> Vec<((f64, f64), (f64, f64))> {
    let len = (to.0 - from.0).hypot(to.1 - from.1);
    if !dashed || len == 0.0 {
        return vec![(from, to)];
    }
    let at = |d: f64| {
        let t = d.min(len) / len;
        (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t)
    };
    (0..)
        .map(|i| f64::from(i) * 10.0)
        .take_while(|d| *d < len)
        .map(|d| (at(d), at(d + 6.0)))
        .collect()
}

/// The chart as a PNG file's bytes.
pub fn png(chart: &Chart) -> Vec<u8> {
    let mut c = Canvas(vec![255; (WIDTH * HEIGHT * 3) as usize]);
    for shape in chart.layout() {
        let Ok(()) = match shape {
            Shape::Line {
                from,
                to,
                color,
                width,
                dashed,
            } => dashes(from, to, dashed).into_iter().try_for_each(|(a, b)| {
                Line::new(point(a), point(b))
                    .into_styled(PrimitiveStyle::with_stroke(rgb(color), width))
                    .draw(&mut c)
            }),
            Shape::Dot { at, color } => Circle::with_center(point(at), 7)
                .into_styled(PrimitiveStyle::with_fill(rgb(color)))
                .draw(&mut c),
            Shape::Text {
                at,
                text,
                anchor,
                color,
            } => {
                let alignment = match anchor {
                    Anchor::Start => Alignment::Left,
                    Anchor::Middle => Alignment::Center,
                    Anchor::End => Alignment::Right,
                };
                let style = TextStyleBuilder::new()
                    .alignment(alignment)
                    .baseline(Baseline::Alphabetic)
                    .build();
                let font = MonoTextStyle::new(&FONT_7X13, rgb(color));
                Text::with_text_style(&text, point(at), font, style)
                    .draw(&mut c)
                    .map(drop)
            }
        };
    }
    let mut out = Vec::new();
    let mut png = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    png.set_color(png::ColorType::Rgb);
    png.set_depth(png::BitDepth::Eight);
    png.write_header()
        .and_then(|mut w| w.write_image_data(&c.0))
        .expect("encoding to memory");
    out
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
        let mut r = png::Decoder::new(std::io::Cursor::new(&a))
            .read_info()
            .unwrap();
        let mut px = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut px).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert!(px.chunks(3).any(|p| p == PALETTE[0]), "a series is drawn");
        assert_eq!(a, png(&sample()));
    }

    #[test]
    fn dashes_cover_the_line_six_on_four_off() {
        assert_eq!(
            dashes((0.0, 0.0), (5.0, 0.0), true),
            vec![((0.0, 0.0), (5.0, 0.0))]
        );
        let d = dashes((0.0, 0.0), (0.0, 25.0), true);
        assert_eq!(d.len(), 3);
        assert_eq!(d[1], ((0.0, 10.0), (0.0, 16.0)));
        assert_eq!(d[2], ((0.0, 20.0), (0.0, 25.0)));
        assert_eq!(dashes((1.0, 1.0), (1.0, 1.0), true).len(), 1);
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
