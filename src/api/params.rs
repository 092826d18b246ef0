//! Query parameters of the GET endpoints. Only the names an endpoint takes, each once: a typo
//! such as `?users=` is a 400 naming it, not an unfiltered answer.

use std::collections::BTreeMap;

use super::error::ApiError;

pub(super) struct QueryParams {
    values: BTreeMap<String, String>,
}

impl QueryParams {
    /// `raw` is the query string (without `?`); `known` are the names the endpoint takes.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<QueryParams, ApiError> {
        let mut values = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !known.contains(&name.as_ref()) {
                let message = if known.is_empty() {
                    "unknown parameter; this endpoint takes none".to_string()
                } else {
                    format!("unknown parameter; this endpoint takes {}", known.join(", "))
                };
                return Err(ApiError::bad_request("invalid_parameter", name.as_ref(), message));
            }
            if values.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(ApiError::bad_request("invalid_parameter", name.as_ref(), "given more than once"));
            }
        }
        Ok(QueryParams { values })
    }

    /// The parameter's value; an empty one counts as absent.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name).filter(|v| !v.is_empty())
    }

    /// `limit`: 1 to 1,000, `default` when absent.
    pub fn limit(&mut self, default: u32) -> Result<u32, ApiError> {
        match self.take("limit") {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "limit", "must be a whole number from 1 to 1000")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(raw: &str) -> Option<String> {
        QueryParams::parse(Some(raw), &["user", "limit"]).err().and_then(|e| e.field)
    }

    #[test]
    fn names_the_parameter_that_is_wrong() {
        assert_eq!(field_of("users=a"), Some("users".into()));
        assert_eq!(field_of("user=a&user=b"), Some("user".into()));
        assert_eq!(field_of("user=a%20b&limit="), None);
        let mut params = QueryParams::parse(Some("user=a%20b&limit="), &["user", "limit"]).unwrap();
        assert_eq!(params.take("user").as_deref(), Some("a b"));
        assert_eq!(params.limit(50).unwrap(), 50);
        for bad in ["0", "1001", "-1", "ten"] {
            let mut params = QueryParams::parse(Some(&format!("limit={bad}")), &["limit"]).unwrap();
            assert_eq!(params.limit(50).unwrap_err().field.as_deref(), Some("limit"), "{bad}");
        }
    }
}
