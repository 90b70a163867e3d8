//! The mapping model: project-ID values, the `--project-mappings` syntax, the immutable lookup
//! table, and the Kubernetes objects mappings are read from (ClusterPair, mapping ConfigMap).

mod error;
mod id;
pub mod objects;
mod parse;
mod table;

pub use error::{
    is_quotable, EntryRef, MappingError, MappingErrors, MappingWarning, Origin, Part, Side,
};
pub use id::{check_label, IdError, ProjectValue};
pub use parse::{parse_map, parse_text, Entry, Parsed};
pub use table::{LookupRef, Table, TableParts};

/// Parses and checks a `--project-mappings` string (or plain mappings text).
pub fn table_from_text(text: &str) -> Result<Table, MappingErrors> {
    Table::build(parse_text(text, &Origin::Text))
}

#[cfg(test)]
mod tests;
