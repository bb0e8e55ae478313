// No console window behind the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    stemdeck_engine::memory::configure_allocator();
    stemdeck_app::run();
}
