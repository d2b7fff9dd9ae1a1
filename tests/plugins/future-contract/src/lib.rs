//! Built against contract 9.0.0, which does not exist.
wit_bindgen::generate!({ world: "plugin", path: "wit" });

struct Future;
impl exports::provision::provider::provider::Guest for Future {
    fn info() -> String {
        "from the future".into()
    }
}
export!(Future);
