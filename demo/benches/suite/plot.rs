//! The scaling plot: throughput and p99 against concurrency, one line per variant.

use std::path::Path;

use plotters::prelude::*;

/// One line: a variant's (concurrency, ops/s, p99 ms) points.
pub struct Line {
    pub name: String,
    pub points: Vec<(u32, f64, f64)>,
}

/// Writes an SVG with two panels (ops/s, p99 ms) over concurrency on a log2 axis.
pub fn write(path: &Path, title: &str, lines: &[Line]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let panels = root.split_evenly((1, 2));
    let cs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let min_c = cs().min().unwrap_or(1).max(1);
    let max_c = cs().max().unwrap_or(256).max(min_c + 1);
    let x_range = (min_c as f64).log2() - 0.3..(max_c as f64).log2() + 0.3;
    // Distinct colours for up to eight lines (the variants at N=10, then ours at other N).
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
        RGBColor(127, 127, 127),
        RGBColor(0, 0, 0),
    ];
    for (panel, (label, pick)) in panels
        .iter()
        .zip([("throughput, ops/s", 1usize), ("p99 latency, ms", 2usize)])
    {
        let value = |p: &(u32, f64, f64)| if pick == 1 { p.1 } else { p.2 };
        let top = lines
            .iter()
            .flat_map(|l| l.points.iter().map(value))
            .fold(0.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .caption(label, ("sans-serif", 15))
            .build_cartesian_2d(x_range.clone(), 0f64..top.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("concurrent tasks (log2)")
            // One label per power of two, where the points are.
            .x_labels(((max_c as f64).log2() - (min_c as f64).log2()) as usize * 2 + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 0.05 {
                    format!("{:.0}", 2f64.powf(x.round()))
                } else {
                    String::new()
                }
            })
            .draw()?;
        for (i, line) in lines.iter().enumerate() {
            let color = colors[i % colors.len()];
            // Ours at other pool sizes dashed-looking: thinner lines.
            let width = if line.name.contains("N=10") { 3 } else { 1 };
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .map(|p| ((p.0 as f64).log2(), value(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))?
                .label(line.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(if pick == 1 {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .draw()?;
    }
    root.present()?;
    Ok(())
}
