//! The help (`?`): every key, and what the warning marks mean.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::state::Marks;
use crate::state::keys::BINDINGS;
use crate::ui::text::heading;

/// Draws the help into `area`.
pub fn draw(frame: &mut Frame, area: Rect, _model: &crate::state::Model) {
    let width = BINDINGS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = vec![heading("Keys")];
    for (keys, what) in BINDINGS {
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
