//! A saved or exported run as a user would import it: a zip archive or a bare state.safetensors. Reading the archive
//! and then the state returns a run state or an error, never a panic or an allocation the bytes do not justify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::run::Checkpoint;
use qlora_playground::web::archive::read_archive;

fuzz_target!(|data: &[u8]| {
    if let Ok(archive) = read_archive(data) {
        if let Ok(checkpoint) = Checkpoint::from_bytes(&archive.state) {
            assert_eq!(checkpoint.params.len(), checkpoint.m.len());
        }
    }
});
