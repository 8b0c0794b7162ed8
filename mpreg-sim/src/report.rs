//! Output of the comparison: a table, CSV files and an SVG plot.

use crate::compare::Row;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

fn f(v: Option<f64>, scale: f64, unit: &str) -> String {
    v.map_or("never".into(), |v| format!("{:.0}{unit}", v * scale))
}

/// The comparison table: ours beside the guide's.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>5} | {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} | {:>9} {:>9} {:>8}",
        "topology",
        "nodes",
        "prop %",
        "prop p50",
        "prop p95",
        "call p50",
        "call p95",
        "frames/u",
        "links",
        "guide eff",
        "guide prop",
        "guide setup"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<24} {:>5} | {:>6.1}% {:>9} {:>9} {:>9} {:>9} {:>8.0} {:>7.1} | {:>8.2}% {:>8.2}% {:>9.0}ms",
            r.topology,
            r.nodes,
            r.propagation_pct,
            f(r.propagation_s_median, 1e3, "ms"),
            f(r.propagation_s_p95, 1e3, "ms"),
            f(r.callability_s_median, 1e3, "ms"),
            f(r.callability_s_p95, 1e3, "ms"),
            r.frames_per_update,
            r.links_per_node,
            r.guide.connection_efficiency_pct,
            r.guide.propagation_pct,
            r.guide.setup_ms,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<24} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9} {:>10}",
        "topology",
        "converged",
        "call %",
        "copies/u",
        "frames/n/s",
        "bytes/n/s",
        "detect",
        "false dead"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<24} {:>9} {:>7.1}% {:>8.0} {:>10.1} {:>10.1} {:>9} {:>10}",
            r.topology,
            f(r.membership_converged_s, 1e3, "ms"),
            r.callability_pct,
            r.copies_per_update,
            r.frames_per_node_s,
            r.bytes_per_node_s,
            f(r.detection_s_median, 1e3, "ms"),
            r.false_dead,
        );
    }
    for r in rows.iter().filter(|r| !r.partitions.is_empty()) {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{}: partitions held 30 probe periods, then healed",
            r.topology
        );
        for p in &r.partitions {
            let _ = writeln!(
                s,
                "  {:<26} heal → identical catalogs p50 {:>7} max {:>7}; recovered {:.1}%; function registered during the split reached {:.1}%",
                p.name,
                f(p.heal_s_median, 1e3, "ms"),
                f(p.heal_s_max, 1e3, "ms"),
                p.recovered_pct,
                p.partition_function_pct
            );
        }
    }
    s
}

/// Writes `compare.csv`, `propagation.csv` and `propagation.svg` into `dir`.
pub fn write_files(rows: &[Row], dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut csv = String::from(
        "topology,nodes,seeds,loss,model,converged_s,propagation_pct,propagation_pct_0_5s,propagation_pct_2s,propagation_s_p50,propagation_s_p95,callability_pct,callability_s_p50,callability_s_p95,frames_per_update,copies_per_update,frames_per_node_s,bytes_per_node_s,links_per_node,detection_s_p50,false_dead,guide_efficiency_pct,guide_propagation_pct,guide_setup_ms\n",
    );
    let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        let _ = writeln!(
            csv,
            "\"{}\",{},{},{},{},{},{:.2},{:.2},{:.2},{},{},{:.2},{},{},{:.1},{:.1},{:.2},{:.1},{:.2},{},{},{},{},{}",
            r.topology,
            r.nodes,
            r.seeds,
            r.loss,
            r.model,
            o(r.membership_converged_s),
            r.propagation_pct,
            r.propagation_pct_at_0_5s,
            r.propagation_pct_at_2s,
            o(r.propagation_s_median),
            o(r.propagation_s_p95),
            r.callability_pct,
            o(r.callability_s_median),
            o(r.callability_s_p95),
            r.frames_per_update,
            r.copies_per_update,
            r.frames_per_node_s,
            r.bytes_per_node_s,
            r.links_per_node,
            o(r.detection_s_median),
            r.false_dead,
            r.guide.connection_efficiency_pct,
            r.guide.propagation_pct,
            r.guide.setup_ms
        );
    }
    std::fs::write(dir.join("compare.csv"), csv)?;
    let mut curve = String::from("topology,ms_since_registration,pct_nodes_with_function\n");
    for r in rows {
        for (t, p) in &r.curve {
            let _ = writeln!(curve, "\"{}\",{t:.1},{p:.2}", r.topology);
        }
    }
    std::fs::write(dir.join("propagation.csv"), curve)?;
    plot(rows, &dir.join("propagation.svg"))?;
    Ok(())
}

fn plot(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let max_ms = rows
        .iter()
        .flat_map(|r| r.curve.iter().map(|c| c.0))
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "New function: % of nodes whose catalog has it",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_ms, 0f64..105f64)?;
    chart
        .configure_mesh()
        .x_desc("ms since registration (virtual time)")
        .y_desc("% of nodes")
        .draw()?;
    for (k, r) in rows.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        // A step curve: each level holds until the next observation.
        let mut pts = Vec::new();
        let mut last = 0.0;
        for (t, p) in &r.curve {
            pts.push((*t, last));
            pts.push((*t, *p));
            last = *p;
        }
        pts.push((max_ms, last));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(r.topology.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
