//! Terminal progress for jobs: one bar per download or input, with percent and ETA.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stemdeck_engine::JobEvent;

pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, make: impl FnOnce() -> ProgressBar, update: impl FnOnce(&ProgressBar)) {
        let mut slot = self.bar.lock().expect("progress lock");
        let bar = slot.get_or_insert_with(make);
        update(bar);
    }

    fn replace(&self, bar: ProgressBar) {
        let mut slot = self.bar.lock().expect("progress lock");
        if let Some(old) = slot.take() {
            old.finish_and_clear();
        }
        *slot = Some(bar);
    }

    pub fn on_event(&self, event: JobEvent) {
        match event {
            JobEvent::DownloadingModel { file, bytes, total } => {
                self.with_bar(|| download_bar(file, total), |bar| bar.set_position(bytes))
            }
            JobEvent::DownloadingAudio {
                video,
                backend,
                bytes,
                total,
            } => {
                let fresh = self
                    .bar
                    .lock()
                    .expect("progress lock")
                    .as_ref()
                    .is_none_or(|b| b.prefix() != format!("downloading {video} ({backend})"));
                if fresh {
                    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} ETA {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("downloading {video} ({backend})"));
                    self.replace(bar);
                }
                self.with_bar(ProgressBar::hidden, |bar| {
                    if let Some(total) = total {
                        bar.set_length(total);
                    }
                    bar.set_position(bytes);
                });
            }
            JobEvent::SourceReady { .. } => {}
            JobEvent::LoadingModel => self.replace(spinner("loading model")),
            JobEvent::Decoding { input } => {
                self.replace(spinner(&format!("decoding {}", input.display())))
            }
            JobEvent::Separating { input, progress } => {
                let total = progress.segments_total as u64;
                let fresh = self
                    .bar
                    .lock()
                    .expect("progress lock")
                    .as_ref()
                    .is_none_or(|b| b.length() != Some(total));
                if fresh {
                    let bar =
                        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {percent:>3}% ETA {eta} ({elapsed})",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!(
                        "separating {}",
                        input.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    self.replace(bar);
                }
                self.with_bar(ProgressBar::hidden, |bar| {
                    bar.set_position(progress.segments_done as u64)
                });
            }
            JobEvent::Writing { path } => self.with_bar(ProgressBar::hidden, |bar| {
                bar.set_message(format!("writing {}", path.display()))
            }),
            JobEvent::Analysing => self.with_bar(ProgressBar::hidden, |bar| {
                bar.set_message("measuring tempo, key and loudness")
            }),
            JobEvent::Finished { .. } => {}
        }
    }

    pub fn finish_input(&self) {
        self.clear();
    }

    pub fn clear(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// The bar a model download shows, for a job and for `stemdeck models download` alike.
pub fn download_bar(prefix: String, total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "downloading {prefix} [{bar:30}] {bytes}/{total_bytes} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}
