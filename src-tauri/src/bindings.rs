//! The TypeScript declarations of every type the commands and channels carry, generated
//! from the Rust types into `ui/src/bindings.ts`. The test below fails when that file is
//! stale; `UPDATE_BINDINGS=1 cargo test -p stemdeck-app --lib bindings` rewrites it.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use stemdeck_engine::analysis::{Analysis, Key, KeyMode, Loudness, StemLoudness, Tempo};
    use stemdeck_engine::input::intake::Refused;
    use stemdeck_engine::input::link::VideoId;
    use stemdeck_engine::jobs::library::{Job, JobSource, JobStage, JobTimings};
    use stemdeck_engine::jobs::queue::JobUpdate;
    use stemdeck_engine::jobs::settings::{AppSettings, JobSettings};
    use stemdeck_engine::pipeline::StemFile;
    use stemdeck_engine::pipeline::options::{FormatChoice, PrecisionName};
    use stemdeck_engine::player::{
        Meter, MixPreset, MixSettings, OutputStatus, PlayerState, Practice, StemMix, StemOverview,
    };
    use stemdeck_engine::{DeviceChoice, FileFormat, Precision, SampleFormat, SettingChoices};
    use ts_rs::{Config, TS};

    use crate::commands::export::{DragPayload, DragSource};
    use crate::commands::library::AddReport;
    use crate::commands::player::PlayerView;
    use crate::commands::settings::{SettingsView, YtDlpStatus};
    use stemdeck_engine::models::status::{Availability, ModelStatus};

    fn declarations() -> String {
        // Ids, sizes and times fit a JavaScript number; a bigint would not mix with them.
        let cfg = Config::new().with_large_int("number");
        let decls = [
            Job::decl(&cfg),
            JobTimings::decl(&cfg),
            JobSource::decl(&cfg),
            JobStage::decl(&cfg),
            JobUpdate::decl(&cfg),
            JobSettings::decl(&cfg),
            AppSettings::decl(&cfg),
            StemFile::decl(&cfg),
            VideoId::decl(&cfg),
            DeviceChoice::decl(&cfg),
            PrecisionName::decl(&cfg),
            FileFormat::decl(&cfg),
            SampleFormat::decl(&cfg),
            SettingChoices::decl(&cfg),
            FormatChoice::decl(&cfg),
            Refused::decl(&cfg),
            AddReport::decl(&cfg),
            SettingsView::decl(&cfg),
            YtDlpStatus::decl(&cfg),
            ModelStatus::decl(&cfg),
            Availability::decl(&cfg),
            PlayerView::decl(&cfg),
            PlayerState::decl(&cfg),
            Meter::decl(&cfg),
            MixSettings::decl(&cfg),
            StemMix::decl(&cfg),
            MixPreset::decl(&cfg),
            Practice::decl(&cfg),
            Analysis::decl(&cfg),
            Tempo::decl(&cfg),
            Key::decl(&cfg),
            KeyMode::decl(&cfg),
            Loudness::decl(&cfg),
            StemLoudness::decl(&cfg),
            DragPayload::decl(&cfg),
            DragSource::decl(&cfg),
            StemOverview::decl(&cfg),
            OutputStatus::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from the Rust types by src-tauri/src/bindings.rs; do not edit.\n\
             // UPDATE_BINDINGS=1 cargo test -p stemdeck-app --lib bindings rewrites it.\n",
        );
        for decl in decls {
            out.push_str("\nexport ");
            out.push_str(&decl);
            out.push('\n');
        }
        out
    }

    #[test]
    fn bindings_match_the_rust_types() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts");
        let generated = declarations();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(&file, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == generated,
            "ui/src/bindings.ts is stale; run UPDATE_BINDINGS=1 cargo test -p stemdeck-app --lib bindings"
        );
    }

    #[test]
    fn the_precision_declaration_names_every_precision() {
        let decl = PrecisionName::decl(&Config::new());
        for precision in [Precision::Fast, Precision::Exact] {
            assert!(
                decl.contains(&format!("\"{}\"", precision.name())),
                "{decl}"
            );
        }
    }
}
