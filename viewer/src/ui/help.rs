//! The help (`?`): every key, and what the warning marks mean.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::state::Marks;
use crate::state::keys::{BINDINGS, REPLAY_BINDINGS};
use crate::ui::text::heading;

/// Draws the help into `area` (in a replay, the replay's keys first).
pub fn draw(frame: &mut Frame, area: Rect, model: &crate::state::Model) {
    let replay = model.replay.is_some();
    let bindings: Vec<&(&str, &str)> = if replay {
        REPLAY_BINDINGS
            .iter()
            .chain(BINDINGS.iter().filter(|(keys, _)| *keys != "p"))
            .collect()
    } else {
        BINDINGS.iter().collect()
    };
    let width = bindings
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = vec![heading("Keys")];
    for (keys, what) in bindings {
        lines.push(Line::from(vec![
            Span::styled(
                format!("  {keys:<width$}  "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(heading("Warning marks"));
    for (_, symbol, what) in Marks::LEGEND {
        lines.push(Line::from(format!("  {symbol}  {what}")));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Finished tasks stay, dimmed, for 10 s. ? or Esc closes this help.",
        Style::new().add_modifier(Modifier::DIM),
    ));
    let block = Block::bordered().title(Line::from(Span::styled(
        " Help ",
        Style::new().add_modifier(Modifier::BOLD),
    )));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
