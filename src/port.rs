//! The client connection (PostgreSQL's `Port`): who logs in, to which
//! database, from where, as what application.
//!
//! `Port` is not bound by bindgen; pgrx 0.18.1 writes it by hand, and its
//! PostgreSQL 17 version has a field the released 17 no longer has
//! (`canAcceptConnections`), which shifts every field after it: the user
//! name read through it was garbage, and a login failed with "invalid byte
//! sequence". So the start of the struct, up to the last field read here, is
//! written below per major from that major's `libpq/libpq-be.h`. Only
//! pointers to it are ever used, so the fields after it do not matter.

use crate::pg;
use pgrx::pg_sys;
use std::ffi::c_char;

/// The start of `Port`, as each major lays it out.
#[repr(C)]
struct PortStart {
    sock: pg_sys::pgsocket,
    noblock: bool,
    proto: pg_sys::ProtocolVersion,
    laddr: pg_sys::SockAddr,
    raddr: pg_sys::SockAddr,
    remote_host: *mut c_char,
    remote_hostname: *mut c_char,
    remote_hostname_resolv: std::ffi::c_int,
    remote_hostname_errcode: std::ffi::c_int,
    remote_port: *mut c_char,
    /// Where the majors differ: 15 has `CAC_state canAcceptConnections`
    /// here, 17 has nothing, 18 has `char local_host[64]`.
    #[cfg(feature = "pg15")]
    _can_accept_connections: std::ffi::c_uint,
    #[cfg(feature = "pg18")]
    _local_host: [c_char; 64],
    database_name: *mut c_char,
    user_name: *mut c_char,
    cmdline_options: *mut c_char,
    guc_options: *mut pg_sys::List,
    application_name: *mut c_char,
}

/// What the extension reads of a connection.
#[derive(Default)]
pub struct Client {
    pub user: String,
    pub database: String,
    pub host: String,
    pub application_name: String,
}

/// The connection's fields; all empty for NULL.
///
/// # Safety
/// `port` is NULL or a backend's `Port` (what ClientAuthentication_hook is
/// passed, or `MyProcPort`).
pub unsafe fn client(port: *const std::ffi::c_void) -> Client {
    if port.is_null() {
        return Client::default();
    }
    // SAFETY: per this function's contract, with the layout above.
    let p = unsafe { &*(port as *const PortStart) };
    // SAFETY: the fields are NULL or C strings.
    unsafe {
        Client {
            user: pg::cstr(p.user_name),
            database: pg::cstr(p.database_name),
            host: pg::cstr(p.remote_host),
            application_name: pg::cstr(p.application_name),
        }
    }
}

/// This backend's connection (empty for a background process).
pub fn this_backend() -> Client {
    // SAFETY: MyProcPort is NULL or this backend's connection.
    unsafe { client(pg_sys::MyProcPort as *const std::ffi::c_void) }
}
