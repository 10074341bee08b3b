//! Training metrics, also while training runs.
//!
//! The trainer appends a line to `<work-dir>/.scratch/<run>/metrics.jsonl` at every logged step
//! and eval (`kind` "train" or "eval"), and copies the file into `<run>/metrics.jsonl` when it
//! publishes. So the live file is the scratch one when it is at least as new as the published
//! one. The stream ([`stream`]) follows it: it sends every complete line as an event `metric`
//! (`id` = line number, so a client that reconnects with `Last-Event-ID` gets only what it
//! missed), and an event `reset` when the file starts over (a new training run truncates it).

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;

/// The metrics file of `run` (a training stage) to read now, if any.
pub fn live_file(work_dir: &Path, run: &str) -> Option<PathBuf> {
    live_file_named(work_dir, run, "metrics.jsonl")
}

/// The file `name` that `stage` appends to in its scratch folder while it runs and publishes
/// in its output folder: the scratch one when it is at least as new, else the published one.
pub fn live_file_named(work_dir: &Path, stage: &str, name: &str) -> Option<PathBuf> {
    let scratch = work_dir.join(".scratch").join(stage).join(name);
    let published = work_dir.join(stage).join(name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&scratch), modified(&published)) {
        (Some(s), Some(p)) if s < p => Some(published),
        (Some(_), _) => Some(scratch),
        (None, Some(_)) => Some(published),
        (None, None) => None,
    }
}

/// Every metrics line so far, parsed.
pub fn read_all(work_dir: &Path, run: &str) -> distill_core::Result<Vec<serde_json::Value>> {
    let Some(path) = live_file(work_dir, run) else { return Ok(Vec::new()) };
    let (records, _) = distill_core::jsonl::read_lenient(&path)?;
    Ok(records)
}

/// Where the stream is in the file it follows.
struct Follow {
    work_dir: PathBuf,
    run: String,
    file: Option<PathBuf>,
    /// Bytes of complete lines sent.
    offset: u64,
    /// Lines sent (the next event's id is this plus one).
    lines: u64,
    /// Lines the client already has (`Last-Event-ID`), skipped once.
    skip: u64,
    pending: std::collections::VecDeque<Event>,
}

impl Follow {
    /// New complete lines since the last poll, as events; a `reset` first when the file was
    /// replaced or truncated.
    fn poll(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let file = live_file(&self.work_dir, &self.run);
        let meta = file.as_ref().and_then(|f| std::fs::metadata(f).ok());
        let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        let switched = file != self.file;
        if (switched && self.file.is_some()) || len < self.offset {
            // Another file, or the same one started over: the client drops what it has, unless
            // the new file merely continues the old (the published copy of the scratch file).
            let continues = switched && len >= self.offset && file.is_some();
            if !continues {
                events.push(Event::default().event("reset").data(self.run.clone()));
                self.offset = 0;
                self.lines = 0;
                self.skip = 0;
            }
        }
        self.file = file.clone();
        if len == self.offset {
            return events;
        }
        let Some(path) = file else { return events };
        let mut chunk = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = f.take(len - self.offset).read_to_end(&mut chunk);
            }
        }
        // Only complete lines: the trainer may be writing the last one.
        let complete = chunk.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        for line in chunk[..complete].split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            self.lines += 1;
            if self.lines <= self.skip {
                continue;
            }
            events.push(Event::default().event("metric").id(self.lines.to_string()).data(String::from_utf8_lossy(line)));
        }
        self.offset += complete as u64;
        events
    }
}

/// Server-sent events of `run`'s metrics, polling the file every `every`.
pub fn stream(work_dir: PathBuf, run: String, last_event_id: u64, every: Duration) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = Follow { work_dir, run, file: None, offset: 0, lines: 0, skip: last_event_id, pending: Default::default() };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok(e), st));
            }
            let events = st.poll();
            if events.is_empty() {
                tokio::time::sleep(every).await;
            } else {
                st.pending.extend(events);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn data(e: &Event) -> String {
        format!("{e:?}")
    }

    #[tokio::test]
    async fn the_stream_sends_new_lines_as_they_are_appended_and_resets_when_the_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join(".scratch/train");
        std::fs::create_dir_all(&scratch).unwrap();
        let file = scratch.join("metrics.jsonl");
        std::fs::write(&file, "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"st").unwrap();
        let mut s = Box::pin(stream(dir.path().to_path_buf(), "train".into(), 0, Duration::from_millis(10)));
        let first = s.next().await.unwrap().unwrap();
        assert!(data(&first).contains("step\\\":1"), "{first:?}");
        std::fs::write(&file, "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2}\n").unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), s.next()).await.unwrap().unwrap().unwrap();
        assert!(data(&second).contains("step\\\":2"), "the half-written line is sent once complete: {second:?}");
        std::fs::write(&file, "{\"kind\":\"train\",\"step\":10}\n").unwrap();
        let reset = tokio::time::timeout(Duration::from_secs(5), s.next()).await.unwrap().unwrap().unwrap();
        assert!(data(&reset).contains("reset"), "{reset:?}");
    }
}
