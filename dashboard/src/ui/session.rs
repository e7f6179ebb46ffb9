//! The access token and the operator's name, kept in the tab's session storage (gone
//! when the tab closes; never in local storage or cookies).

const TOKEN_KEY: &str = "watchpost.token";
const USER_KEY: &str = "watchpost.user";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The bearer token, if one was entered.
pub fn token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()?
        .filter(|t| !t.trim().is_empty())
}

/// Stores (or with `None`, forgets) the token.
pub fn set_token(token: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => s.set_item(TOKEN_KEY, t),
            None => s.remove_item(TOKEN_KEY),
        };
    }
}

/// The name recorded on acks and silences ("dashboard" until set).
pub fn user() -> String {
    storage()
        .and_then(|s| s.get_item(USER_KEY).ok().flatten())
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "dashboard".into())
}

/// Stores the name.
pub fn set_user(user: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(USER_KEY, user.trim());
    }
}
