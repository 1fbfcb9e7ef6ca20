//! `ctl events` and `ctl list --watch`: follow the daemon's events by long-polling `Events`
//! until Ctrl-C (exit 0) or until the daemon goes away (a clear error, exit 1).

use std::io::Write;
use std::path::Path;

use nri_chaos_proto::control::EventsRequest;
use nri_chaos_proto::control_ttrpc::ControlClient;

use super::{call_error, ctx, emit, render, CtlError};

/// How long one long poll waits on the daemon (it caps this too).
const POLL_WAIT_MS: u32 = 5_000;

/// The daemon's newest event sequence number: follow from here to see only what comes next.
pub async fn current(client: &ControlClient, path: &Path) -> Result<u64, CtlError> {
    let batch = client
        .events(ctx(), &EventsRequest::default())
        .await
        .map_err(|err| call_error(path, err))?;
    Ok(batch.last_seq)
}

/// Prints every event after `since` as it happens, until Ctrl-C or the daemon goes away.
pub async fn follow(
    client: &ControlClient,
    path: &Path,
    mut since: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    if !json {
        emit(out, render::EVENT_HEADER)?;
    }
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let request = EventsRequest {
            since_seq: since,
            wait_ms: POLL_WAIT_MS,
            ..Default::default()
        };
        let batch = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            batch = client.events(ctx(), &request) => batch.map_err(|err| match err {
                ttrpc::Error::RpcStatus(status) => CtlError::Refused(status.message().to_string()),
                other => CtlError::Gone { path: path.to_path_buf(), reason: other.to_string() },
            })?,
        };
        let mut text = String::new();
        if batch.dropped > 0 {
            text.push_str(&if json {
                format!("{{\"missed\":{}}}\n", batch.dropped)
            } else {
                format!(
                    "... {} event(s) missed: the daemon keeps only the most recent ones\n",
                    batch.dropped
                )
            });
        }
        for event in &batch.events {
            text.push_str(&if json {
                render::event_json(event)
            } else {
                render::event_line(event)
            });
        }
        emit(out, &text)?;
        since = batch.last_seq.max(since);
    }
}
