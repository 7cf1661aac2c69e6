//! A link's query string: parsing never fails, the settings it yields always validate, and writing them back to a
//! query and reading that again gives the same settings without a message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::model::ModelConfig;
use qlora_playground::web::{parse_query, LINK_PARAMETERS};

fuzz_target!(|query: &str| {
    let model = ModelConfig::bytes(4, 4, 192, 256).expect("the shipped model's shape");
    let parsed = parse_query(query, &model);
    parsed.settings.validate(&model).expect("parsed settings validate");
    // Each message names the parameter it is about (or none), for the page to drop when its control changes.
    for e in &parsed.errors {
        assert!(e.param.is_empty() || LINK_PARAMETERS.contains(&e.param.as_str()), "{e:?}");
    }
    let again = parse_query(&parsed.settings.to_query(&model), &model);
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!(again.settings, parsed.settings);
});
