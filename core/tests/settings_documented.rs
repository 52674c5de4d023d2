//! Every setting the code reads is in the configuration reference (`docs/configuration.md`),
//! checked against the code: the names are those `Config::from_lookup` asks its lookup for, not
//! a list kept by hand.

use std::cell::RefCell;

use bluegreen_core::config::Config;

#[test]
fn every_setting_the_code_reads_is_in_the_configuration_reference() {
    let asked = RefCell::new(Vec::<String>::new());
    Config::from_lookup(|name| {
        asked.borrow_mut().push(name.to_string());
        None
    })
    .expect("the defaults parse");
    let asked = asked.into_inner();
    assert!(asked.len() >= 25, "{asked:?}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let missing: Vec<&String> = asked
        .iter()
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "settings read by the code but not in a row of docs/configuration.md's table: {missing:?}"
    );
}
