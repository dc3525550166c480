//! Where each value of a YAML document was written, to point errors at lines and columns.

use std::fmt;

use crate::validation::field::{Path, Segment};

/// A place in a manifest's text: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The positions of a document's values, shaped like the document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PositionTree {
    /// A scalar (or an alias), at its position.
    Scalar(Position),
    /// A sequence and its items.
    Sequence(Position, Vec<PositionTree>),
    /// A mapping and its entries: key, where the key was written, the value's positions.
    Mapping(Position, Vec<(String, Position, PositionTree)>),
}

impl PositionTree {
    /// Where this node starts.
    pub(crate) fn position(&self) -> Position {
        match self {
            PositionTree::Scalar(position)
            | PositionTree::Sequence(position, _)
            | PositionTree::Mapping(position, _) => *position,
        }
    }

    /// The position of `path` in this tree: the key's position for a field or map key, the item's
    /// for a list index; the nearest existing ancestor's when the path goes further than the
    /// document (a required field that is missing points at its parent).
    pub(crate) fn find(&self, path: &Path) -> Position {
        let mut node = self;
        let mut found = self.position();
        for segment in path.segments() {
            let next = match (segment, node) {
                (Segment::Field(name) | Segment::Key(name), PositionTree::Mapping(_, entries)) => {
                    entries
                        .iter()
                        .rev()
                        .find(|(key, _, _)| key == name)
                        .map(|(_, key_position, value)| (*key_position, value))
                }
                (Segment::Index(index), PositionTree::Sequence(_, items)) => {
                    items.get(*index).map(|item| (item.position(), item))
                }
                _ => None,
            };
            match next {
                Some((position, child)) => {
                    found = position;
                    node = child;
                }
                None => break,
            }
        }
        found
    }
}
