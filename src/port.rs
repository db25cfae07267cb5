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

extern "C-unwind" {
    // libpq/libpq-be.h (PostgreSQL built with SSL): the client certificate's
    // subject, as pg_stat_ssl shows it; "" without one. A client sends a
    // certificate only when the server asks (ssl_ca_file set), and the
    // handshake fails unless that file's CA signed it. The same in 15 to 18.
    fn be_tls_get_peer_subject_name(port: *mut std::ffi::c_void, ptr: *mut c_char, len: usize);
}

// SAFETY: a backend is single-threaded; read and written by its own thread.
static mut CERTIFICATE_SUBJECT: Option<String> = None;

/// The subject of the certificate this backend's client presented, verified
/// by the server's CA; empty without one (no SSL, no certificate, a
/// background process). Fixed for the session, so read once.
pub fn client_certificate_subject() -> &'static str {
    // SAFETY: see CERTIFICATE_SUBJECT.
    let cached = unsafe { &mut *std::ptr::addr_of_mut!(CERTIFICATE_SUBJECT) };
    cached.get_or_insert_with(|| {
        // SAFETY: reads a backend variable.
        let port = unsafe { pg_sys::MyProcPort };
        if port.is_null() {
            return String::new();
        }
        let mut buf = [0 as c_char; 1024];
        // SAFETY: port is this backend's connection; the function writes at
        // most len bytes, NUL-terminated.
        unsafe {
            be_tls_get_peer_subject_name(
                port as *mut std::ffi::c_void,
                buf.as_mut_ptr(),
                buf.len(),
            );
            pg::cstr(buf.as_ptr())
        }
    })
}

/// Is this session's client another node of the cluster: did it present
/// the certificate `ai_agent_safety.cluster_node_certificate` names?
pub fn from_cluster_node() -> bool {
    match crate::settings::cluster_node_certificate() {
        Some(subject) => client_certificate_subject() == subject,
        None => false,
    }
}
