//! `taskscope replay FILE` from start to end: load, then the live view on
//! the recording until the user quits.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::replay::{Player, Progress, load};

/// Loads the recording at `file` (calling `progress` as it reads: a progress
/// bar's place) and runs the live view on it until the user quits. Returns
/// what could not be read, each naming its file, for the caller to say once
/// the terminal is restored; an error when nothing can be replayed.
pub fn view(file: &Path, progress: &mut dyn FnMut(&Progress)) -> anyhow::Result<Vec<String>> {
    let recording = load(file, progress)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the viewer's runtime")?;
    let label = file.display().to_string();
    runtime.block_on(async move {
        let (player, model) = Player::new(recording, label, Instant::now());
        let player = crate::tui::run_replay(player, model).await?;
        Ok(player.problems().to_vec())
    })
}
