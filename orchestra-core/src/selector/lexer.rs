//! The lexer and parser of the label selector syntax, token for token as Kubernetes'
//! `labels.Lexer` and `labels.Parser` read it.
//!
//! The lexer works on bytes: whitespace (space, tab, CR, LF) separates tokens, the special symbols
//! `= ! ( ) , > <` make operators (`!=` and `==` taken as one token), and every other run of bytes
//! is an identifier, or the keyword `in` or `notin`. The parser is Kubernetes' recursive descent,
//! with its one piece of context: where a value may stand, `in` and `notin` are plain identifiers,
//! so `in in (in)` is a valid selector.

use std::collections::BTreeSet;

use super::label::{
    Operator, ParseSelectorError, Requirement, check_integer, check_key, check_label_value,
};

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// A token with its text and the byte offset where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Item<'a> {
    pub(super) token: Token,
    pub(super) text: &'a str,
    pub(super) position: usize,
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Every token of `input`, ending with one [`Token::EndOfString`].
pub(super) fn scan(input: &str) -> Vec<Item<'_>> {
    let bytes = input.as_bytes();
    let mut items = Vec::new();
    let mut position = 0;
    loop {
        while bytes.get(position).copied().is_some_and(is_whitespace) {
            position += 1;
        }
        let Some(&first) = bytes.get(position) else {
            items.push(Item {
                token: Token::EndOfString,
                text: "",
                position,
            });
            return items;
        };
        let start = position;
        let token = if is_special(first) {
            // The longest operator wins, as in Kubernetes' scanSpecialSymbol: only `!=` and `==`
            // are two bytes long.
            match bytes.get(position..position + 2) {
                Some(b"!=") => {
                    position += 2;
                    Token::NotEquals
                }
                Some(b"==") => {
                    position += 2;
                    Token::DoubleEquals
                }
                _ => {
                    position += 1;
                    match first {
                        b'=' => Token::Equals,
                        b'!' => Token::DoesNotExist,
                        b'(' => Token::OpenPar,
                        b')' => Token::ClosedPar,
                        b',' => Token::Comma,
                        b'>' => Token::GreaterThan,
                        _ => Token::LessThan,
                    }
                }
            }
        } else {
            while bytes
                .get(position)
                .is_some_and(|&byte| !is_special(byte) && !is_whitespace(byte))
            {
                position += 1;
            }
            match input.get(start..position) {
                Some("in") => Token::In,
                Some("notin") => Token::NotIn,
                _ => Token::Identifier,
            }
        };
        // Token boundaries are ASCII bytes or the ends of the input, so always char boundaries.
        let text = input.get(start..position).unwrap_or_default();
        items.push(Item {
            token,
            text,
            position: start,
        });
    }
}

/// Where the parser stands: after a key (`in` and `notin` are operators) or where a value may
/// stand (they are identifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Parses a label selector string into its requirements, sorted by key (stably, so requirements
/// on one key keep their order).
pub(super) fn parse(input: &str) -> Result<Vec<Requirement>, ParseSelectorError> {
    let mut parser = Parser {
        items: scan(input),
        index: 0,
        end: input.len(),
    };
    let mut requirements = parser.selector()?;
    requirements.sort_by(|a, b| a.key().cmp(b.key()));
    Ok(requirements)
}

struct Parser<'a> {
    items: Vec<Item<'a>>,
    index: usize,
    end: usize,
}

impl<'a> Parser<'a> {
    /// The item at `index`, or the final end of string past it.
    fn item(&self, index: usize) -> Item<'a> {
        self.items
            .get(index)
            .or_else(|| self.items.last())
            .copied()
            .unwrap_or(Item {
                token: Token::EndOfString,
                text: "",
                position: self.end,
            })
    }

    fn in_context(mut item: Item<'a>, context: Context) -> Item<'a> {
        if context == Context::Values && matches!(item.token, Token::In | Token::NotIn) {
            item.token = Token::Identifier;
        }
        item
    }

    fn lookahead(&self, context: Context) -> Item<'a> {
        Self::in_context(self.item(self.index), context)
    }

    fn consume(&mut self, context: Context) -> Item<'a> {
        let item = self.item(self.index);
        if self.index < self.items.len() {
            self.index += 1;
        }
        Self::in_context(item, context)
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, ParseSelectorError> {
        let mut requirements = Vec::new();
        loop {
            let item = self.lookahead(Context::Values);
            match item.token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(self.requirement()?);
                    let next = self.consume(Context::Values);
                    match next.token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let after = self.lookahead(Context::Values);
                            if !matches!(after.token, Token::Identifier | Token::DoesNotExist) {
                                return Err(unexpected(after, "identifier after ','"));
                            }
                        }
                        _ => return Err(unexpected(next, "',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(unexpected(item, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, ParseSelectorError> {
        let mut item = self.consume(Context::Values);
        let negated = item.token == Token::DoesNotExist;
        if negated {
            item = self.consume(Context::Values);
        }
        if item.token != Token::Identifier {
            return Err(unexpected(item, "identifier"));
        }
        let key = item.text;
        check_key(key).map_err(|error| ParseSelectorError::InvalidRequirement {
            position: item.position,
            error,
        })?;
        // `!key` is complete whatever follows (a following operator is then a syntax error at
        // the selector level), and a bare key before ',' or the end is an existence test.
        if negated {
            return Ok(Requirement::new_unchecked(
                key,
                Operator::DoesNotExist,
                BTreeSet::new(),
            ));
        }
        if matches!(
            self.lookahead(Context::Values).token,
            Token::EndOfString | Token::Comma
        ) {
            return Ok(Requirement::new_unchecked(
                key,
                Operator::Exists,
                BTreeSet::new(),
            ));
        }

        let operator_item = self.consume(Context::KeyAndOperator);
        let operator = match operator_item.token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => return Err(unexpected(operator_item, "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.values()?,
            _ => vec![self.exact_value()?],
        };

        // The checks of Kubernetes' NewRequirement, in its order; the parser has already made
        // the value counts right.
        let invalid = |position, error| ParseSelectorError::InvalidRequirement { position, error };
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for &(value, position) in &values {
                check_integer(key, value).map_err(|error| invalid(position, error))?;
            }
        }
        for &(value, position) in &values {
            check_label_value(key, value).map_err(|error| invalid(position, error))?;
        }
        let values = values
            .into_iter()
            .map(|(value, _)| value.to_owned())
            .collect();
        Ok(Requirement::new_unchecked(key, operator, values))
    }

    /// `( values )`; `()` is the set of the empty string, as in Kubernetes.
    fn values(&mut self) -> Result<Vec<(&'a str, usize)>, ParseSelectorError> {
        let open = self.consume(Context::Values);
        if open.token != Token::OpenPar {
            return Err(unexpected(open, "'('"));
        }
        let item = self.lookahead(Context::Values);
        match item.token {
            Token::Identifier | Token::Comma => {
                let values = self.identifiers()?;
                let close = self.consume(Context::Values);
                if close.token != Token::ClosedPar {
                    return Err(unexpected(close, "')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![("", item.position)])
            }
            _ => Err(unexpected(item, "',', ')' or identifier")),
        }
    }

    /// A comma-separated list of possibly empty identifiers, up to (not including) `)`.
    fn identifiers(&mut self) -> Result<Vec<(&'a str, usize)>, ParseSelectorError> {
        let mut values = Vec::new();
        loop {
            let item = self.consume(Context::Values);
            match item.token {
                Token::Identifier => {
                    values.push((item.text, item.position));
                    let next = self.lookahead(Context::Values);
                    match next.token {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(unexpected(next, "',' or ')'")),
                    }
                }
                Token::Comma => {
                    // A comma with nothing before it (`(,`), before `)` (`,)`) or before another
                    // comma (`,,`) stands for the empty value.
                    if values.is_empty() {
                        values.push(("", item.position));
                    }
                    let next = self.lookahead(Context::Values);
                    if next.token == Token::ClosedPar {
                        values.push(("", next.position));
                        return Ok(values);
                    }
                    if next.token == Token::Comma {
                        self.consume(Context::Values);
                        values.push(("", next.position));
                    }
                }
                _ => return Err(unexpected(item, "',', or identifier")),
            }
        }
    }

    /// The one value after `=`, `==`, `!=`, `>` or `<`: empty when a ',' or the end follows.
    fn exact_value(&mut self) -> Result<(&'a str, usize), ParseSelectorError> {
        let item = self.lookahead(Context::Values);
        if matches!(item.token, Token::EndOfString | Token::Comma) {
            return Ok(("", item.position));
        }
        let item = self.consume(Context::Values);
        if item.token == Token::Identifier {
            Ok((item.text, item.position))
        } else {
            Err(unexpected(item, "identifier"))
        }
    }
}

fn unexpected(item: Item<'_>, expected: &'static str) -> ParseSelectorError {
    let found = if item.token == Token::EndOfString {
        "end of string".to_owned()
    } else {
        item.text.to_owned()
    };
    ParseSelectorError::Unexpected {
        position: item.position,
        found,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: &str) -> Vec<Token> {
        scan(input).into_iter().map(|item| item.token).collect()
    }

    // Kubernetes' TestLexer: one token each, with its text.
    #[test]
    fn lexes_single_tokens_like_kubernetes() {
        let cases = [
            ("", Token::EndOfString),
            (",", Token::Comma),
            ("notin", Token::NotIn),
            ("in", Token::In),
            ("=", Token::Equals),
            ("==", Token::DoubleEquals),
            (">", Token::GreaterThan),
            ("<", Token::LessThan),
            ("!", Token::DoesNotExist),
            ("!=", Token::NotEquals),
            ("(", Token::OpenPar),
            (")", Token::ClosedPar),
            ("~", Token::Identifier),
            ("||", Token::Identifier),
        ];
        for (input, token) in cases {
            let items = scan(input);
            assert_eq!(items[0].token, token, "{input:?}");
            assert_eq!(items[0].text, input, "{input:?}");
        }
    }

    // Kubernetes' TestLexerSequence and TestParserLookahead.
    #[test]
    fn lexes_sequences_like_kubernetes() {
        use Token::*;
        let cases: [(&str, &[Token]); 10] = [
            (
                "key in ( value )",
                &[Identifier, In, OpenPar, Identifier, ClosedPar],
            ),
            (
                "key notin ( value )",
                &[Identifier, NotIn, OpenPar, Identifier, ClosedPar],
            ),
            (
                "key in ( value1, value2 )",
                &[
                    Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar,
                ],
            ),
            ("key", &[Identifier]),
            ("!key", &[DoesNotExist, Identifier]),
            ("()", &[OpenPar, ClosedPar]),
            (
                "x in (),y",
                &[Identifier, In, OpenPar, ClosedPar, Comma, Identifier],
            ),
            (
                "== != (), = notin",
                &[
                    DoubleEquals,
                    NotEquals,
                    OpenPar,
                    ClosedPar,
                    Comma,
                    Equals,
                    NotIn,
                ],
            ),
            ("key>2", &[Identifier, GreaterThan, Identifier]),
            ("key<1", &[Identifier, LessThan, Identifier]),
        ];
        for (input, expected) in cases {
            let mut expected = expected.to_vec();
            expected.push(EndOfString);
            assert_eq!(tokens(input), expected, "{input:?}");
        }
    }

    #[test]
    fn takes_the_longest_operator() {
        use Token::*;
        assert_eq!(tokens("==="), [DoubleEquals, Equals, EndOfString]);
        assert_eq!(tokens("!=="), [NotEquals, Equals, EndOfString]);
        assert_eq!(tokens(">="), [GreaterThan, Equals, EndOfString]);
        assert_eq!(tokens("!!"), [DoesNotExist, DoesNotExist, EndOfString]);
    }

    #[test]
    fn records_byte_positions() {
        let items = scan(" a\tin (b)");
        let positions: Vec<usize> = items.iter().map(|item| item.position).collect();
        assert_eq!(positions, [1, 3, 6, 7, 8, 9]);
        // Multi-byte characters stay inside identifiers.
        let items = scan("é=ü");
        assert_eq!(items[0].text, "é");
        assert_eq!(items[2].text, "ü");
        assert_eq!(items[2].position, 3);
    }
}
