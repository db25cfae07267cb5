//! utils/timeout.h, which pgrx does not bind.

/// `USER_TIMEOUT`, the first timeout an extension may register. Where
/// the majors differ: 17 inserted TRANSACTION_TIMEOUT before it.
#[cfg(feature = "pg15")]
pub const USER_TIMEOUT: i32 = 12;
#[cfg(not(feature = "pg15"))]
pub const USER_TIMEOUT: i32 = 13;
/// `STATEMENT_TIMEOUT`: the same in 15 to 18.
pub const STATEMENT_TIMEOUT: i32 = 3;
// SAFETY: the declarations of timeout.h, called only from a backend.
extern "C-unwind" {
    pub fn RegisterTimeout(id: i32, handler: unsafe extern "C-unwind" fn()) -> i32;
    pub fn enable_timeout_at(id: i32, fin_time: i64);
    pub fn disable_timeout(id: i32, keep_indicator: bool);
    pub fn get_timeout_active(id: i32) -> bool;
    pub fn enable_timeout_after(id: i32, delay_ms: i32);
    pub fn get_timeout_finish_time(id: i32) -> i64;
}
