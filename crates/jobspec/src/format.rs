//! Canonical formatting of HCL job files (`orc fmt`).
pub(crate) fn body(_b: &hcl_edit::structure::Body, source: &str) -> String {
    source.to_string()
}
