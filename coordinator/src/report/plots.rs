//! PNG plots of a report, drawn with plotters into memory: a confusion matrix per feature set
//! and the per-class F1 of the feature sets side by side.

use super::Report;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &str = "sans-serif";
/// One colour per feature set, in report order (2D, predicted 3D, 2D + predicted 3D, and the
/// ceiling's true 3D, 2D + true 3D in greys).
const SET_COLOURS: [RGBColor; 5] = [
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(170, 170, 170),
    RGBColor(110, 110, 110),
];

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(rgb)?;
    Ok(out)
}

/// Draws on a white RGB canvas of `size` and returns the PNG bytes.
pub(crate) fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        draw(&root)?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    encode_png(&buf, size)
}

pub(crate) fn text(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    s: &str,
    at: (i32, i32),
    size: u32,
    pos: Pos,
) -> anyhow::Result<()> {
    let style = TextStyle::from((FONT, size).into_font()).pos(pos).color(&BLACK);
    area.draw_text(s, &style, at)
        .map_err(|e| anyhow::anyhow!("drawing text failed (is a sans-serif font installed?): {e}"))
}

/// Confusion matrix: cells coloured by the fraction of the true class (row), labelled with counts.
pub fn confusion_png(title: &str, report: &Report, confusion: &[Vec<usize>]) -> anyhow::Result<Vec<u8>> {
    let k = report.classes.len().max(1) as i32;
    // Small enough that two matrices of 6 classes sit side by side in a 1280-pixel window.
    let cell = (360 / k).clamp(30, 60);
    let (left, top) = (200, 70);
    let size = ((left + cell * k + 40) as u32, (top + cell * k + 60) as u32);
    render(size, |root| {
        text(root, title, (size.0 as i32 / 2, 20), 20, Pos::new(HPos::Center, VPos::Center))?;
        text(
            root,
            "predicted",
            (left + cell * k / 2, top + cell * k + 40),
            16,
            Pos::new(HPos::Center, VPos::Center),
        )?;
        for (t, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &n) in row.iter().enumerate() {
                let frac = if total > 0 { n as f64 / total as f64 } else { 0.0 };
                let shade = (255.0 * (1.0 - 0.85 * frac)) as u8;
                let (x0, y0) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], BLACK.stroke_width(1)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                text(
                    root,
                    &n.to_string(),
                    (x0 + cell / 2, y0 + cell / 2),
                    15,
                    Pos::new(HPos::Center, VPos::Center),
                )?;
            }
            let label = format!("{} ({total})", report.classes[t].class);
            text(
                root,
                &label,
                (left - 8, top + t as i32 * cell + cell / 2),
                14,
                Pos::new(HPos::Right, VPos::Center),
            )?;
        }
        for (p, c) in report.classes.iter().enumerate() {
            let short: String = c.class.chars().take((cell / 7).max(3) as usize).collect();
            text(
                root,
                &short,
                (left + p as i32 * cell + cell / 2, top - 10),
                12,
                Pos::new(HPos::Center, VPos::Bottom),
            )?;
        }
        Ok(())
    })
}

/// Per-class F1 of every feature set (mean over the repetitions, a whisker of one standard
/// deviation each way), grouped bars, with the macro F1 in the legend.
pub fn f1_png(report: &Report) -> anyhow::Result<Vec<u8>> {
    let k = report.classes.len().max(1) as i32;
    let sets = report.feature_sets.len().max(1) as i32;
    let group = (720 / k).clamp(60, 160);
    // The legend: two columns of feature sets above the plot.
    let legend_rows = (sets + 1) / 2;
    let (left, top, plot_h) = (60, 50 + 20 * legend_rows, 320);
    let size = ((left + group * k + 30).max(700) as u32, (top + plot_h + 60) as u32);
    render(size, |root| {
        text(
            root,
            &format!("F1 per class by feature set (mean of {} repetitions, ± 1 std)", report.cv.repeats),
            (size.0 as i32 / 2, 18),
            18,
            Pos::new(HPos::Center, VPos::Center),
        )?;
        let base = top + plot_h;
        let err = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
        for tick in 0..=4 {
            let y = base - plot_h * tick / 4;
            root.draw(&PathElement::new(
                vec![(left, y), (left + group * k, y)],
                RGBColor(220, 220, 220).stroke_width(1),
            ))
            .map_err(err)?;
            text(
                root,
                &format!("{:.2}", tick as f64 / 4.0),
                (left - 6, y),
                12,
                Pos::new(HPos::Right, VPos::Center),
            )?;
        }
        let bar = ((group - 16) / sets).max(2);
        let y_of = |v: f64| base - (v.clamp(0.0, 1.0) * plot_h as f64).round() as i32;
        for (s, r) in report.feature_sets.iter().enumerate() {
            let colour = SET_COLOURS[s % SET_COLOURS.len()];
            for (c, m) in r.per_class.iter().enumerate() {
                let x0 = left + c as i32 * group + 8 + s as i32 * bar;
                root.draw(&Rectangle::new([(x0, y_of(m.f1.mean)), (x0 + bar - 2, base)], colour.filled()))
                    .map_err(err)?;
                if m.f1.std > 0.0 {
                    let xm = x0 + (bar - 2) / 2;
                    root.draw(&PathElement::new(
                        vec![(xm, y_of(m.f1.mean - m.f1.std)), (xm, y_of(m.f1.mean + m.f1.std))],
                        BLACK.stroke_width(1),
                    ))
                    .map_err(err)?;
                }
            }
            let ceiling = if r.ceiling { ", ceiling" } else { "" };
            let legend = format!("{} (macro F1 {:.3}{ceiling})", r.name, r.macro_f1.mean);
            let ly = 44 + 20 * (s as i32 / 2);
            let lx = left + (s as i32 % 2) * 320;
            root.draw(&Rectangle::new([(lx, ly - 6), (lx + 12, ly + 6)], colour.filled())).map_err(err)?;
            text(root, &legend, (lx + 18, ly), 13, Pos::new(HPos::Left, VPos::Center))?;
        }
        for (c, class) in report.classes.iter().enumerate() {
            let short: String = class.class.chars().take((group / 7) as usize).collect();
            text(
                root,
                &short,
                (left + c as i32 * group + group / 2, base + 8),
                12,
                Pos::new(HPos::Center, VPos::Top),
            )?;
            text(
                root,
                &format!("n={}", class.cells),
                (left + c as i32 * group + group / 2, base + 26),
                11,
                Pos::new(HPos::Center, VPos::Top),
            )?;
        }
        Ok(())
    })
}
