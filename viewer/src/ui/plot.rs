//! Plots of the runtime's last minutes: samples put into one column per
//! terminal cell (each column a slice of [`HISTORY_WINDOW`], the newest at
//! the right), drawn as ratatui [`Sparkline`]s.

use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{RenderDirection, Sparkline, SparklineBar};

use crate::state::{HISTORY_WINDOW, Sample};

/// How the samples that fall in one column make its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Their mean: for rates and shares of time.
    Mean,
    /// Their largest: for queue depths and counts, whose peaks matter.
    Max,
}

/// The values of `columns` columns covering the window that ends at `end`,
/// oldest first; `None` for a column no sample (with a value) fell in.
pub fn columns<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    end: SystemTime,
    columns: usize,
    value: impl Fn(&Sample) -> Option<f64>,
    combine: Combine,
) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0f64, 0u32); columns];
    if columns == 0 {
        return Vec::new();
    }
    let window = HISTORY_WINDOW.as_secs_f64();
    for sample in samples {
        let Some(v) = value(sample) else {
            continue;
        };
        let Ok(age) = end.duration_since(sample.at) else {
            continue;
        };
        let age = age.as_secs_f64();
        if age > window {
            continue;
        }
        // The newest sample is in the last column.
        let from_right = ((age / window) * columns as f64) as usize;
        let column = columns - 1 - from_right.min(columns - 1);
        let (sum, n) = &mut sums[column];
        match combine {
            Combine::Mean => *sum += v,
            Combine::Max => *sum = if *n == 0 { v } else { sum.max(v) },
        }
        *n += 1;
    }
    sums.into_iter()
        .map(|(sum, n)| match (n, combine) {
            (0, _) => None,
            (n, Combine::Mean) => Some(sum / f64::from(n)),
            (_, Combine::Max) => Some(sum),
        })
        .collect()
}

/// Draws `values` (from [`columns`]) into `area` as a sparkline scaled to
/// `max` (at least the largest value). A value above zero is at least one
/// eighth of a cell high, so that a rare event is seen; zero is a dim eighth,
/// and a column without a sample is blank.
pub fn sparkline(frame: &mut Frame, area: Rect, values: &[Option<f64>], max: f64, style: Style) {
    if area.is_empty() {
        return;
    }
    let top = values.iter().flatten().copied().fold(max, f64::max);
    // Eighths of a cell, the sparkline's resolution.
    let steps = u64::from(area.height) * 8;
    let bars: Vec<SparklineBar> = values
        .iter()
        .rev()
        .map(|v| match v {
            None => SparklineBar::from(None),
            // Zero: a dim baseline, told apart from no sample at all.
            Some(v) if *v <= 0.0 || top <= 0.0 => {
                SparklineBar::from(Some(1)).style(Some(Style::new().fg(Color::DarkGray)))
            }
            Some(v) => {
                let scaled = ((v / top) * steps as f64).round() as u64;
                SparklineBar::from(Some(scaled.clamp(1, steps)))
            }
        })
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(bars)
            .max(steps)
            .direction(RenderDirection::RightToLeft)
            .absent_value_symbol(" ")
            .style(style),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: SystemTime, alive: u64) -> Sample {
        Sample {
            at,
            busy: None,
            polls_per_sec: None,
            slow_per_sec: None,
            alive_tasks: alive,
            global_queue_depth: 0,
        }
    }

    #[test]
    fn samples_fall_in_the_column_of_their_age_the_newest_at_the_right() {
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        // 10 columns of 30 s each.
        let samples = [
            sample(end - Duration::from_secs(299), 7),
            sample(end - Duration::from_secs(100), 3),
            sample(end - Duration::from_secs(95), 5),
            sample(end - Duration::from_secs(1), 1),
            sample(end, 2),
            sample(end - Duration::from_secs(400), 99), // outside the window
            sample(end + Duration::from_secs(1), 99),   // after the end (paused)
        ];
        let alive = |s: &Sample| Some(s.alive_tasks as f64);
        let mean = columns(samples.iter(), end, 10, alive, Combine::Mean);
        assert_eq!(
            mean,
            [
                Some(7.0),
                None,
                None,
                None,
                None,
                None,
                Some(4.0),
                None,
                None,
                Some(1.5)
            ]
        );
        let max = columns(samples.iter(), end, 10, alive, Combine::Max);
        assert_eq!(max[6], Some(5.0));
        assert_eq!(max[9], Some(2.0));
        assert!(columns(samples.iter(), end, 0, alive, Combine::Max).is_empty());
    }
}
