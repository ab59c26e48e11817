//! A small builder for statements whose conditions depend on the request:
//! each value is bound where its placeholder is written, so placeholders
//! are numbered in order and never by hand.

use sqlx::any::AnyArguments;

/// The names of a filter value: `a/b,c/d` is two repositories. A name
/// holds no comma (repository paths, project keys and environment names do
/// not), so a list is its names joined by commas; blanks are dropped, and a
/// value of blanks only is the one name it is (matching nothing).
pub(crate) fn names(value: &str) -> Vec<&str> {
    let names: Vec<&str> = value.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if names.is_empty() { vec![value] } else { names }
}

/// One bound value.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Int(i64),
}

/// SQL text and the values of its `$n` placeholders, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql { text: text.to_string(), values: Vec::new() }
    }

    /// Appends SQL text (no values in it: those go through [`Sql::text`] and [`Sql::int`]).
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Binds a text value; returns its placeholder to write into the SQL.
    pub(crate) fn text(&mut self, value: impl Into<String>) -> String {
        self.values.push(Value::Text(value.into()));
        format!("${}", self.values.len())
    }

    /// Binds an integer value; returns its placeholder.
    pub(crate) fn int(&mut self, value: i64) -> String {
        self.values.push(Value::Int(value));
        format!("${}", self.values.len())
    }

    /// `lower({expr}) IN (lower($a), lower($b), …)`: `expr` is any of the
    /// comma-separated names of `value` ([`names`]), whatever their case.
    pub(crate) fn any_name(&mut self, expr: &str, value: &str) -> String {
        let placeholders: Vec<String> =
            names(value).into_iter().map(|name| format!("lower({})", self.text(name))).collect();
        format!("lower({expr}) IN ({})", placeholders.join(", "))
    }

    /// The statement, its values bound.
    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for value in &self.values {
            query = match value {
                Value::Text(text) => query.bind(text.clone()),
                Value::Int(n) => query.bind(*n),
            };
        }
        query
    }

    #[cfg(test)]
    fn text_of(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_the_order_values_are_bound() {
        let mut sql = Sql::new("SELECT 1 WHERE 1 = 1");
        let a = sql.text("x");
        sql.push(&format!(" AND a = {a}"));
        let (b, c) = (sql.int(2), sql.text("y"));
        sql.push(&format!(" AND (b > {b} OR c = {c})"));
        assert_eq!(sql.text_of(), "SELECT 1 WHERE 1 = 1 AND a = $1 AND (b > $2 OR c = $3)");
        assert_eq!(sql.values.len(), 3);
    }

    #[test]
    fn a_comma_separated_filter_is_any_of_its_names() {
        assert_eq!(names("a/b"), ["a/b"]);
        assert_eq!(names(" a/b , c/d,,"), ["a/b", "c/d"]);
        assert_eq!(names(","), [","]);
        let mut sql = Sql::new("SELECT 1 WHERE 1 = 1");
        let condition = sql.any_name("repo", "a/b,C/D");
        sql.push(&format!(" AND {condition}"));
        assert_eq!(sql.text_of(), "SELECT 1 WHERE 1 = 1 AND lower(repo) IN (lower($1), lower($2))");
    }
}
