//! Charts as inline SVG, drawn on the server: no script, no external asset,
//! readable in a screenshot and without colour (every bar carries its value
//! as text, and the axes name their units).

use crate::app::approval_page::escape;

/// One bar: its label (under it) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 28.0;
/// How far above the highest bar a limit line is still drawn to scale.
const OFF_SCALE: f64 = 4.0;

/// A line across a chart: a quota, a pace — its value and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub value: f64,
    /// Drawn beside the line, before the value ("quota", "pace held").
    pub label: String,
}

/// A bar chart with a y axis in `unit`, an optional limit drawn as a dashed
/// line, and `id` for tests and links.
pub fn bar_chart(id: &str, title: &str, unit: &str, bars: &[Bar], limit: Option<&Limit>) -> String {
    let data_top = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    // A limit far above the data would flatten every bar: it is then said
    // in words at the top instead of drawn.
    let drawn = limit.filter(|l| l.value <= OFF_SCALE * data_top.max(1.0));
    let top_value = data_top.max(drawn.map_or(0.0, |l| l.value)).max(1.0);
    let scale = nice_ceiling(top_value);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 8.0;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(2.0);
    let total: f64 = bars.iter().map(|b| b.value).sum();
    let mut svg = format!(
        "<figure class=\"chart\" id=\"{id}\"><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
aria-labelledby=\"{id}-title\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui,sans-serif\" font-size=\"11\">\
<title id=\"{id}-title\">{}</title>\
<text x=\"{LEFT}\" y=\"16\" font-size=\"13\" font-weight=\"600\">{}</text>",
        escape(title),
        escape(title)
    );
    // Axes and gridlines: 0, half, top, labelled with the unit.
    for i in 0..=2 {
        let v = scale * f64::from(i) / 2.0;
        let y = TOP + plot_h - plot_h * v / scale;
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#dfe1e6\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 4.0,
            y + 4.0,
            format_value(v)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"12\" y=\"{:.1}\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(unit)
    ));
    let label_every = (bars.len() / 12).max(1);
    for (i, b) in bars.iter().enumerate() {
        let h = plot_h * b.value / scale;
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = TOP + plot_h - h;
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"#0052cc\" data-label=\"{}\" data-value=\"{}\"><title>{}: {} {}</title></rect>",
            escape(&b.label),
            b.value,
            escape(&b.label),
            format_value(b.value),
            escape(unit)
        ));
        if b.value > 0.0 && bars.len() <= 24 {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                x + bar_w / 2.0,
                y - 2.0,
                format_value(b.value)
            ));
        }
        if (bars.len() - 1 - i).is_multiple_of(label_every) {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                x + bar_w / 2.0,
                HEIGHT - BOTTOM + 14.0,
                escape(&b.label)
            ));
        }
    }
    if let Some(limit) = limit.filter(|_| drawn.is_none()) {
        svg.push_str(&format!(
            "<text class=\"limit\" x=\"{:.1}\" y=\"16\" text-anchor=\"end\" fill=\"#de350b\" data-value=\"{}\">{} {} (far above)</text>",
            LEFT + plot_w,
            limit.value,
            escape(&limit.label),
            format_value(limit.value)
        ));
    }
    if let Some(limit) = drawn {
        let y = TOP + plot_h - plot_h * limit.value / scale;
        svg.push_str(&format!(
            "<line class=\"limit\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#de350b\" stroke-dasharray=\"6 4\" data-value=\"{}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#de350b\">{} {}</text>",
            LEFT + plot_w,
            limit.value,
            LEFT + plot_w,
            y - 4.0,
            escape(&limit.label),
            format_value(limit.value)
        ));
    }
    svg.push_str(&format!(
        "</svg><figcaption>total <span class=\"total\" data-total=\"{total}\">{}</span> {}</figcaption></figure>",
        format_value(total),
        escape(unit)
    ));
    svg
}

/// The axis top: 1, 2 or 5 times a power of ten, at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_carries_every_value_as_text_and_its_total() {
        let bars = vec![
            Bar {
                label: "10:00".into(),
                value: 3.0,
            },
            Bar {
                label: "11:00".into(),
                value: 4.5,
            },
        ];
        let quota = Limit {
            value: 10.0,
            label: "quota".into(),
        };
        let svg = bar_chart(
            "req",
            "Requests <per hour>",
            "requests",
            &bars,
            Some(&quota),
        );
        assert!(svg.contains("data-value=\"3\"") && svg.contains("data-value=\"4.5\""));
        assert!(svg.contains("data-total=\"7.5\""));
        assert!(svg.contains("Requests &lt;per hour&gt;"), "escaped");
        assert!(svg.contains("quota 10") && svg.contains("<line class=\"limit\""));
    }

    #[test]
    fn a_limit_far_above_the_bars_is_said_not_drawn() {
        let bars = vec![Bar {
            label: "10:00".into(),
            value: 3.0,
        }];
        let quota = Limit {
            value: 65_000.0,
            label: "quota".into(),
        };
        let svg = bar_chart("p", "Points", "points", &bars, Some(&quota));
        assert!(!svg.contains("<line class=\"limit\""));
        assert!(svg.contains("quota 65000 (far above)"));
        assert!(svg.contains(">5</text>"), "the axis fits the bars: {svg}");
    }

    #[test]
    fn the_axis_top_is_a_round_number_above_the_data() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
    }
}
