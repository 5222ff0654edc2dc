//! Items written as an English list: "a", "a and b", "a, b and c".

use core::fmt;

/// The items of an iterator, displayed as "a", "a and b" or "a, b and c"
/// (nothing at all for none), for the sentences servers and tools write.
#[derive(Clone, Copy, Debug)]
pub struct Listed<I>(pub I);

impl<I> fmt::Display for Listed<I>
where
    I: Iterator + Clone,
    I::Item: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.clone().count();
        for (position, item) in self.0.clone().enumerate() {
            let separator = match position {
                0 => "",
                last if last + 1 == count => " and ",
                _ => ", ",
            };
            write!(f, "{separator}{item}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    #[test]
    fn one_two_and_more_items_read_as_a_sentence() {
        let listed = |items: &[&str]| Listed(items.iter()).to_string();
        assert_eq!(listed(&[]), "");
        assert_eq!(listed(&["a"]), "a");
        assert_eq!(listed(&["a", "b"]), "a and b");
        assert_eq!(listed(&["a", "b", "c", "d"]), "a, b, c and d");
    }
}
