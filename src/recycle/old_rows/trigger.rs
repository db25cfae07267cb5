//! The trigger that keeps old rows: added to a result relation of an
//! agent's query in that query's memory only (its ResultRelInfo: no
//! catalog row, nothing an agent can see, disable or drop), last, after the
//! table's own BEFORE ROW triggers.

use super::{keep, Kind};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The name the trigger shows in EXPLAIN ANALYZE.
const TRIGGER_NAME: &std::ffi::CStr = c"ai_agent_safety: recycle bin";
/// The FmgrInfo's stand-in oid (no pg_proc row: the address is given).
const TRIGGER_FN: u32 = 0xFFFF_FFF0;

/// Gives a result relation one more BEFORE ROW trigger (for DELETE, for
/// UPDATE or both), last, in this query's memory.
///
/// # Safety
/// `rri` is a result relation of the started query whose EState is `estate`.
pub(super) unsafe fn add(
    rri: *mut pg_sys::ResultRelInfo,
    estate: *mut pg_sys::EState,
    delete: bool,
    update: bool,
) {
    // SAFETY: per this function's contract; everything is allocated in the
    // query's memory and lives as long as the ResultRelInfo.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        let before = (*rri).ri_TrigDesc;
        let n = if before.is_null() {
            0
        } else {
            (*before).numtriggers as usize
        };
        let desc =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::TriggerDesc>()) as *mut pg_sys::TriggerDesc;
        if !before.is_null() {
            *desc = *before;
        }
        let triggers = pg_sys::palloc0((n + 1) * std::mem::size_of::<pg_sys::Trigger>())
            as *mut pg_sys::Trigger;
        if n > 0 {
            std::ptr::copy_nonoverlapping((*before).triggers, triggers, n);
        }
        let t = &mut *triggers.add(n);
        t.tgname = pg_sys::pstrdup(TRIGGER_NAME.as_ptr());
        t.tgfoid = pg_sys::Oid::from(TRIGGER_FN);
        let mut events = 0;
        if delete {
            events |= pg_sys::TRIGGER_TYPE_DELETE;
        }
        if update {
            events |= pg_sys::TRIGGER_TYPE_UPDATE;
        }
        t.tgtype = (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE | events) as i16;
        // Fires whatever session_replication_role says.
        t.tgenabled = pg_sys::TRIGGER_FIRES_ALWAYS as std::ffi::c_char;
        t.tgisinternal = true;
        (*desc).triggers = triggers;
        (*desc).numtriggers = (n + 1) as i32;
        (*desc).trig_delete_before_row |= delete;
        (*desc).trig_update_before_row |= update;
        (*rri).ri_TrigDesc = desc;

        let funcs = pg_sys::palloc0((n + 1) * std::mem::size_of::<pg_sys::FmgrInfo>())
            as *mut pg_sys::FmgrInfo;
        if n > 0 {
            std::ptr::copy_nonoverlapping((*rri).ri_TrigFunctions, funcs, n);
        }
        let f = &mut *funcs.add(n);
        f.fn_addr = Some(keep_row);
        f.fn_oid = pg_sys::Oid::from(TRIGGER_FN);
        f.fn_nargs = 0;
        // Never counted by track_functions (it has no pg_proc row).
        f.fn_stats = pg_sys::TrackFunctionsLevel::TRACK_FUNC_ALL as u8;
        f.fn_mcxt = (*estate).es_query_cxt;
        (*rri).ri_TrigFunctions = funcs;

        let whens = pg_sys::palloc0((n + 1) * std::mem::size_of::<*mut pg_sys::ExprState>())
            as *mut *mut pg_sys::ExprState;
        if n > 0 {
            std::ptr::copy_nonoverlapping((*rri).ri_TrigWhenExprs, whens, n);
        }
        (*rri).ri_TrigWhenExprs = whens;

        if !(*rri).ri_TrigInstrument.is_null() {
            let instr = pg_sys::palloc0((n + 1) * std::mem::size_of::<pg_sys::Instrumentation>())
                as *mut pg_sys::Instrumentation;
            if n > 0 {
                std::ptr::copy_nonoverlapping((*rri).ri_TrigInstrument, instr, n);
            }
            pg_sys::InstrInit(instr.add(n), (*estate).es_instrument);
            (*rri).ri_TrigInstrument = instr;
        }
        pg_sys::MemoryContextSwitchTo(old);
    }
}

/// The trigger: copies the row about to be deleted or overwritten, and
/// lets the change go on unchanged (a DELETE's row, an UPDATE's new row).
#[pg_guard]
// SAFETY: called by ExecCallTriggerFunc as a BEFORE ROW trigger, with TriggerData as its context.
unsafe extern "C-unwind" fn keep_row(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: a trigger call's context is its TriggerData.
    unsafe {
        let td = (*fcinfo).context as *mut pg_sys::TriggerData;
        let update = (*td).tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE;
        let kind = if update { Kind::Update } else { Kind::Delete };
        keep((*td).tg_relation, (*td).tg_trigslot, kind);
        (*fcinfo).isnull = false;
        pg_sys::Datum::from(if update {
            (*td).tg_newtuple
        } else {
            (*td).tg_trigtuple
        })
    }
}
