//! Parser for Stripe's bracket-nested `application/x-www-form-urlencoded` parameters.
//!
//! `a[b][0][c]=v` becomes `{"a":{"b":[{"c":"v"}]}}`. Every leaf is a JSON string (Stripe
//! coerces types per parameter). A hash whose keys are all canonical non-negative integers
//! becomes an array ordered by index; `a[]=x&a[]=y` appends. A repeated scalar keeps the
//! last value. Conflicting shapes (`a=1&a[b]=2`) and unbalanced brackets are errors that
//! name the offending parameter.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Deepest nesting accepted (`a[b][c]...`), as a guard against abusive input.
pub const MAX_DEPTH: usize = 16;

/// A malformed parameter: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    /// The parameter as the client wrote it (or its prefix where the problem is).
    pub param: String,
    /// A human-readable explanation.
    pub message: String,
}

#[derive(Debug)]
enum Node {
    Leaf(String),
    Map(BTreeMap<String, Node>),
    List(Vec<Node>),
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Append,
}

/// Parses a URL-encoded body or query string into a JSON object.
pub fn parse(input: &str) -> Result<Value, FormError> {
    parse_bytes(input.as_bytes())
}

/// Parses URL-encoded bytes (invalid UTF-8 is replaced) into a JSON object.
pub fn parse_bytes(input: &[u8]) -> Result<Value, FormError> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(input) {
        if key.is_empty() {
            if value.is_empty() {
                continue;
            }
            return Err(FormError {
                param: String::new(),
                message: format!("Invalid parameter: a value ('{value}') was sent without a name."),
            });
        }
        let (base, segs) = split_key(&key)?;
        insert(&mut root, &base, &segs, value.into_owned(), &key)?;
    }
    Ok(Value::Object(to_object(root)))
}

/// Splits `a[b][]` into `a` and its bracket segments.
fn split_key(key: &str) -> Result<(String, Vec<Seg>), FormError> {
    let bad = |why: &str| FormError {
        param: key.to_string(),
        message: format!("Invalid parameter name '{key}': {why}."),
    };
    let (base, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => {
            if key.contains(']') {
                return Err(bad("unbalanced brackets"));
            }
            return Ok((key.to_string(), Vec::new()));
        }
    };
    if base.is_empty() {
        return Err(bad("it must start with a name, not a bracket"));
    }
    if base.contains(']') {
        return Err(bad("unbalanced brackets"));
    }
    let mut segs = Vec::new();
    while !rest.is_empty() {
        if !rest.starts_with('[') {
            return Err(bad("text after a closing bracket"));
        }
        let close = rest.find(']').ok_or_else(|| bad("unbalanced brackets"))?;
        let inner = &rest[1..close];
        if inner.contains('[') {
            return Err(bad("unbalanced brackets"));
        }
        segs.push(if inner.is_empty() {
            Seg::Append
        } else {
            Seg::Key(inner.to_string())
        });
        if segs.len() > MAX_DEPTH {
            return Err(bad("nested too deeply"));
        }
        rest = &rest[close + 1..];
    }
    Ok((base.to_string(), segs))
}

fn conflict(raw: &str) -> FormError {
    FormError {
        param: raw.to_string(),
        message: format!(
            "Invalid parameter '{raw}': it conflicts with another parameter of the same name but a different shape (a value, a hash and an array cannot be mixed)."
        ),
    }
}

fn insert(
    map: &mut BTreeMap<String, Node>,
    key: &str,
    segs: &[Seg],
    value: String,
    raw: &str,
) -> Result<(), FormError> {
    if segs.is_empty() {
        match map.get(key) {
            Some(Node::Map(_)) | Some(Node::List(_)) => return Err(conflict(raw)),
            _ => {
                map.insert(key.to_string(), Node::Leaf(value));
            }
        }
        return Ok(());
    }
    let child = map.entry(key.to_string()).or_insert_with(|| match segs[0] {
        Seg::Append => Node::List(Vec::new()),
        Seg::Key(_) => Node::Map(BTreeMap::new()),
    });
    insert_into(child, segs, value, raw)
}

fn insert_into(node: &mut Node, segs: &[Seg], value: String, raw: &str) -> Result<(), FormError> {
    match (&segs[0], node) {
        (Seg::Key(k), Node::Map(m)) => insert(m, k, &segs[1..], value, raw),
        (Seg::Append, Node::List(list)) => {
            let rest = &segs[1..];
            if rest.is_empty() {
                list.push(Node::Leaf(value));
                return Ok(());
            }
            // `a[][x]=1&a[][y]=2` builds one element; a repeated `x` starts the next one.
            let reuse = match (list.last(), &rest[0]) {
                (Some(Node::Map(m)), Seg::Key(k)) => !m.contains_key(k) || rest.len() > 1,
                _ => false,
            };
            if !reuse {
                list.push(match rest[0] {
                    Seg::Append => Node::List(Vec::new()),
                    Seg::Key(_) => Node::Map(BTreeMap::new()),
                });
            }
            match list.last_mut() {
                Some(last) => insert_into(last, rest, value, raw),
                None => Err(conflict(raw)),
            }
        }
        _ => Err(conflict(raw)),
    }
}

fn to_object(map: BTreeMap<String, Node>) -> Map<String, Value> {
    map.into_iter().map(|(k, v)| (k, to_value(v))).collect()
}

fn to_value(node: Node) -> Value {
    match node {
        Node::Leaf(s) => Value::String(s),
        Node::List(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Node::Map(m) => {
            let mut indexed: Vec<(u64, &String)> = Vec::with_capacity(m.len());
            for k in m.keys() {
                match k.parse::<u64>() {
                    Ok(n) if n.to_string() == *k => indexed.push((n, k)),
                    _ => return Value::Object(to_object(m)),
                }
            }
            indexed.sort();
            let order: Vec<String> = indexed.into_iter().map(|(_, k)| k.clone()).collect();
            let mut m = m;
            Value::Array(
                order
                    .into_iter()
                    .filter_map(|k| m.remove(&k))
                    .map(to_value)
                    .collect(),
            )
        }
    }
}

/// Converts an array produced from numeric keys back into an index-keyed hash (for `metadata[0]=x`).
pub fn array_as_hash(items: &[Value]) -> Map<String, Value> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_and_nested() {
        let v = parse("mode=payment&metadata[order]=42&a%5Bb%5D=c+d").unwrap();
        assert_eq!(
            v,
            json!({"mode":"payment","metadata":{"order":"42"},"a":{"b":"c d"}})
        );
    }

    #[test]
    fn numeric_indices_make_arrays_in_index_order() {
        let v = parse(
            "line_items[1][quantity]=2&line_items[0][price]=price_a&line_items[0][quantity]=1&line_items[1][price]=price_b",
        )
        .unwrap();
        assert_eq!(
            v["line_items"],
            json!([{"price":"price_a","quantity":"1"},{"price":"price_b","quantity":"2"}])
        );
        let v = parse("discounts[0][coupon_data][percent_off]=10").unwrap();
        assert_eq!(
            v,
            json!({"discounts":[{"coupon_data":{"percent_off":"10"}}]})
        );
        // Index 10 sorts after 9, numerically.
        let v = parse("a[10]=x&a[9]=y").unwrap();
        assert_eq!(v["a"], json!(["y", "x"]));
    }

    #[test]
    fn empty_brackets_append() {
        let v = parse("expand[]=line_items&expand[]=customer").unwrap();
        assert_eq!(v["expand"], json!(["line_items", "customer"]));
        let v = parse("a[][x]=1&a[][y]=2&a[][x]=3").unwrap();
        assert_eq!(v["a"], json!([{"x":"1","y":"2"},{"x":"3"}]));
    }

    #[test]
    fn empty_value_and_last_wins() {
        let v = parse("discounts=&name=a&name=b").unwrap();
        assert_eq!(v, json!({"discounts":"","name":"b"}));
        assert_eq!(parse("").unwrap(), json!({}));
        assert_eq!(parse("&&").unwrap(), json!({}));
    }

    #[test]
    fn non_canonical_numbers_stay_hash_keys() {
        let v = parse("metadata[007]=x&metadata[1]=y").unwrap();
        assert_eq!(v["metadata"], json!({"007":"x","1":"y"}));
        let v = parse("metadata[a]=1&metadata[0]=2").unwrap();
        assert_eq!(v["metadata"], json!({"a":"1","0":"2"}));
    }

    #[test]
    fn conflicts_are_errors_with_param() {
        let e = parse("a=1&a[b]=2").unwrap_err();
        assert_eq!(e.param, "a[b]");
        let e = parse("a[b]=2&a=1").unwrap_err();
        assert_eq!(e.param, "a");
        let e = parse("a[]=1&a[x]=2").unwrap_err();
        assert_eq!(e.param, "a[x]");
    }

    #[test]
    fn malformed_names_are_errors() {
        assert_eq!(parse("a[b=1").unwrap_err().param, "a[b");
        assert_eq!(parse("[a]=1").unwrap_err().param, "[a]");
        assert_eq!(parse("a]=1").unwrap_err().param, "a]");
        assert_eq!(parse("a[b]c=1").unwrap_err().param, "a[b]c");
        assert_eq!(parse("a[[b]]=1").unwrap_err().param, "a[[b]]");
        let deep = format!("a{}=1", "[x]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).is_err());
        assert!(parse("=orphan").is_err());
    }

    #[test]
    fn array_as_hash_round_trips_indices() {
        let m = array_as_hash(&[json!("a"), json!("b")]);
        assert_eq!(Value::Object(m), json!({"0":"a","1":"b"}));
    }
}
