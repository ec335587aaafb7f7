//! How a run's windows are read: up to `concurrency` fetchers page through the windows in plan
//! order, each asking for the next page as soon as the one before is parsed, and one writer commits
//! every page waiting for it in one transaction, each page followed by its checkpoint, and goes on
//! adding the pages that arrive meanwhile, up to a cap. Between them at most [`KIB_AHEAD`] of rows
//! wait (a page is freed once written, before its transaction commits), so memory stays flat
//! however fast upstream answers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{Engine, Run, RunEvent, RunReport, Stop};
use crate::http::{FetchError, Upstream};
use crate::planner::Window;
use crate::sources::{self, PageQuery};
use crate::store::{self, PageCommit, Progress};

impl Engine {
    /// Reads `windows` (fetchers and the writer at once) and counts what commits into `report`.
    /// Upstream error codes met on the way go to `errors`.
    pub(super) async fn read_windows(
        &self,
        run: &Run<'_>,
        windows: Vec<(Window, String)>,
        report: &mut RunReport,
        errors: &mut BTreeMap<String, u64>,
        on_event: &mut (dyn FnMut(&RunEvent) + Send),
    ) -> Result<(), Stop> {
        let (pages, queue) = mpsc::unbounded_channel();
        let room_ahead = Arc::new(Semaphore::new(KIB_AHEAD));
        let (fetched, written) = tokio::join!(
            self.fetch_windows(run, windows, pages, &room_ahead, errors),
            self.write_pages(run, queue, report, on_event)
        );
        // A writer that failed stopped the fetchers: its error is the cause.
        written.and(fetched)
    }

    /// Fetches the windows, up to `concurrency` at once in plan order, each from its cursor to its
    /// last page, handing every parsed page (with the checkpoint that says it is done) to the
    /// writer; the queue closes when this returns. The first window to fail stops the others after
    /// their page in hand. Returns early, without an error of its own, when the writer has stopped.
    async fn fetch_windows(
        &self,
        run: &Run<'_>,
        windows: Vec<(Window, String)>,
        pages: mpsc::UnboundedSender<Queued>,
        room_ahead: &Arc<Semaphore>,
        errors: &mut BTreeMap<String, u64>,
    ) -> Result<(), Stop> {
        let todo = std::sync::Mutex::new(std::collections::VecDeque::from(windows));
        let next = || todo.lock().ok().and_then(|mut t| t.pop_front());
        // Cancelled by a shutdown (its parent) or by the first window that fails.
        let halt = run.cancel.child_token();
        let worker = || async {
            let mut errors = BTreeMap::new();
            let mut result = Ok(());
            while let Some((window, cursor)) = next() {
                let fetching =
                    self.fetch_window(run, &halt, window, cursor, &pages, room_ahead, &mut errors);
                result = tokio::select! {
                    fetched = fetching => fetched,
                    _ = pages.closed() => Ok(()),
                };
                if result.is_err() || pages.is_closed() {
                    break;
                }
            }
            if result.is_err() {
                halt.cancel();
            }
            (result, errors)
        };
        let workers = (0..run.p.concurrency.max(1)).map(|_| worker());
        let mut outcome = Ok(());
        for (result, worker_errors) in futures_util::future::join_all(workers).await {
            for (code, n) in worker_errors {
                *errors.entry(code).or_default() += n;
            }
            outcome = merge_stops(outcome, result);
        }
        outcome
    }

    /// Fetches one window from `cursor` to its last page, or until `halt`.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_window(
        &self,
        run: &Run<'_>,
        halt: &CancellationToken,
        window: Window,
        mut cursor: String,
        pages: &mpsc::UnboundedSender<Queued>,
        room_ahead: &Arc<Semaphore>,
        errors: &mut BTreeMap<String, u64>,
    ) -> Result<(), Stop> {
        let p = run.p;
        loop {
            if halt.is_cancelled() {
                return Err(Stop::Cancelled(0));
            }
            let query = PageQuery {
                endpoint: &p.endpoint,
                auth: run.auth,
                options: &p.options,
                window,
                cursor: &cursor,
                page_size: p.page_size,
                axis: run.axis,
                start: p.start,
            };
            let fetched = self
                .http
                .fetch(
                    || sources::build_request(&query),
                    &Upstream {
                        retry: &run.policy,
                        redactor: &run.redactor,
                        budget: &run.budget,
                    },
                    halt,
                    errors,
                    |status, body| sources::parse_page(&query, status, body),
                )
                .await
                .map_err(|(e, n)| match e {
                    FetchError::Cancelled => Stop::Cancelled(u64::from(n)),
                    other => Stop::Failed(format!("pipeline `{}`: {other}", p.name), u64::from(n)),
                })?;
            let requests = fetched.requests;
            let mut page = fetched.value;
            let next = match page.next_cursor.take() {
                Some(next) if next == cursor => {
                    return Err(Stop::Failed(
                        format!("pipeline `{}`: upstream returned the same cursor again; stopping instead of looping", p.name),
                        u64::from(requests),
                    ))
                }
                next => next,
            };
            let commit = run.page_commit(window, &cursor, page, requests, next.as_deref());
            let kib = (page_bytes(&commit) / 1024).clamp(1, KIB_AHEAD) as u32;
            // Waits while the writer is KIB_AHEAD behind; the permit goes with the page
            // and is returned when it has been written (and freed).
            let Ok(room) = room_ahead.clone().acquire_many_owned(kib).await else {
                return Ok(());
            };
            if pages.send((commit, room)).is_err() {
                return Ok(());
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }

    /// Commits the pages the fetchers hand over and counts them into the report as they commit.
    /// A transaction takes every page waiting, and goes on taking those that arrive while it is
    /// written, up to [`GROUP_ROWS`] rows or [`GROUP_TIME`] of work ([`Feed`]): when upstream is
    /// slow, pages commit one by one; when it outruns the writer, transactions grow by themselves,
    /// and memory holds no more than the queue, since each page is freed once written.
    async fn write_pages(
        &self,
        run: &Run<'_>,
        mut queue: mpsc::UnboundedReceiver<Queued>,
        report: &mut RunReport,
        on_event: &mut (dyn FnMut(&RunEvent) + Send),
    ) -> Result<(), Stop> {
        let p = run.p;
        while let Some(first) = queue.recv().await {
            let mut feed = Feed::new(queue, first);
            let (stats, feed) = self
                .store
                .call(move |c| {
                    let stats = store::commit_stream(c, &mut || feed.next_chunk())?;
                    Ok((stats, feed))
                })
                .await
                .map_err(|e| Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0))?;
            for ((window, requests, finished), stats) in feed.done.iter().zip(&stats) {
                report.add_page(p, stats, *requests);
                on_event(&RunEvent::Page {
                    window: *window,
                    rows: stats.seen,
                });
                if let Some(window) = *finished {
                    report.windows += 1;
                    report.watermark =
                        Some(report.watermark.map_or(window.end, |w| w.max(window.end)));
                    on_event(&RunEvent::WindowDone { window });
                }
            }
            queue = feed.queue;
        }
        Ok(())
    }
}

/// The writer's end of the queue, lent to the store thread for one transaction: it hands over
/// the pages waiting, chunk by chunk, while the transaction is under [`GROUP_ROWS`] rows and
/// [`GROUP_TIME`] old, and keeps what the engine reports of each page once it has committed.
struct Feed {
    queue: mpsc::UnboundedReceiver<Queued>,
    first: Option<Queued>,
    /// The room in the queue of the chunk being written: returned when the next chunk is asked
    /// for, since the rows are written (and freed) by then.
    held: Vec<OwnedSemaphorePermit>,
    /// Per page handed over: its window, requests, and the window it finished, if any.
    done: Vec<(Window, u32, Option<Window>)>,
    rows: usize,
    /// When the transaction took its first chunk: not when the job was sent, since the job may
    /// wait on the one writer thread behind other pipelines' commits.
    started: Option<Instant>,
}

impl Feed {
    fn new(queue: mpsc::UnboundedReceiver<Queued>, first: Queued) -> Feed {
        Feed {
            queue,
            first: Some(first),
            held: Vec::new(),
            done: Vec::new(),
            rows: 0,
            started: None,
        }
    }

    /// The pages waiting now (none: the transaction commits), or none once the transaction is
    /// large or old enough. The first chunk always has the page the writer woke up for: a feed
    /// dropped holding it would lose that page's rows.
    fn next_chunk(&mut self) -> Option<Cow<'static, [PageCommit]>> {
        self.held.clear();
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.first.is_none() && (self.rows >= GROUP_ROWS || started.elapsed() >= GROUP_TIME) {
            return None;
        }
        let mut chunk = Vec::new();
        while self.rows < GROUP_ROWS {
            let Some((page, room)) = self.first.take().or_else(|| self.queue.try_recv().ok())
            else {
                break;
            };
            let finished = match page.progress {
                Progress::WindowDone { window } => Some(window),
                Progress::Next { .. } => None,
            };
            self.done.push((page.asked.0, page.requests, finished));
            self.rows += page.orders.len();
            chunk.push(page);
            self.held.push(room);
        }
        (!chunk.is_empty()).then_some(Cow::Owned(chunk))
    }
}

/// A parsed page on its way to the writer, holding its rows' room in the queue.
type Queued = (PageCommit, OwnedSemaphorePermit);

/// The most row text fetched but not yet written, in KiB: what the fetchers may run ahead of the
/// writer. A row held in memory takes about twice its text (its parsed fields beside it), so
/// 512 KiB of text is some 1 MB of the process, however large a source's rows are — some 300
/// veapi rows, or one page of damaijia's. A transaction is not bounded by it (it goes on taking
/// pages as they come): 1 MiB cost 1.5 MB more peak RSS and no measurable CPU.
const KIB_AHEAD: usize = 512;
/// The most rows the writer puts in one transaction. Random-keyed indexes make a commit cost
/// about one written page per index per order when a transaction holds a few hundred orders, and
/// far less when it holds thousands: most of them then share their index pages.
const GROUP_ROWS: usize = 5_000;
/// The longest a transaction goes on taking pages: other pipelines' commits wait for the one
/// writer thread meanwhile, and a `status` sees progress at least this often.
const GROUP_TIME: Duration = Duration::from_secs(1);

/// The text a page holds: its rows' and their lines' `raw`, and its rejected rows.
fn page_bytes(page: &PageCommit) -> usize {
    let orders: usize = page
        .orders
        .iter()
        .map(|o| o.raw.len() + o.sub_orders.iter().map(|s| s.raw.len()).sum::<usize>())
        .sum();
    orders + page.rejected.iter().map(|r| r.raw.len()).sum::<usize>()
}

/// How a run of windows read at once stopped: the first failure wins over cancellations (which
/// it caused) and success; the requests of every stopped window count.
fn merge_stops(a: Result<(), Stop>, b: Result<(), Stop>) -> Result<(), Stop> {
    match (a, b) {
        (Ok(()), other) | (other, Ok(())) => other,
        (Err(Stop::Failed(m, x)), Err(Stop::Failed(_, y) | Stop::Cancelled(y)))
        | (Err(Stop::Cancelled(x)), Err(Stop::Failed(m, y))) => Err(Stop::Failed(m, x + y)),
        (Err(Stop::Cancelled(x)), Err(Stop::Cancelled(y))) => Err(Stop::Cancelled(x + y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceKind;

    fn page(n: usize) -> PageCommit {
        let window = Window {
            start: crate::timefmt::beijing_now(),
            end: crate::timefmt::beijing_now(),
        };
        PageCommit {
            run_id: 1,
            pipeline: "p".into(),
            scope: "live".into(),
            source: SourceKind::Veapi,
            orders: (0..n)
                .map(|i| {
                    crate::model::OrderRow::new(
                        SourceKind::Veapi,
                        i.to_string(),
                        crate::model::Kind::Affiliate,
                        "{}".into(),
                    )
                })
                .collect(),
            rejected: Vec::new(),
            asked: (window, String::new()),
            requests: 1,
            progress: Progress::WindowDone { window },
            seen_floor: String::new(),
        }
    }

    /// Regression: a transaction's job waited on the one writer thread behind other pipelines'
    /// commits for longer than GROUP_TIME; its feed then handed over nothing, the transaction
    /// committed empty, and the page the writer had woken up for was dropped with the feed — its
    /// rows never written while later pages' checkpoints moved past them.
    #[test]
    fn the_page_the_writer_woke_up_for_is_handed_over_however_long_the_job_waited() {
        let room = Arc::new(Semaphore::new(KIB_AHEAD));
        let (tx, rx) = mpsc::unbounded_channel::<Queued>();
        let first = (page(3), room.clone().try_acquire_many_owned(1).unwrap());
        tx.send((page(2), room.clone().try_acquire_many_owned(1).unwrap()))
            .unwrap();
        let mut feed = Feed::new(rx, first);
        std::thread::sleep(GROUP_TIME + Duration::from_millis(50));
        let chunk = feed.next_chunk().expect("the first page");
        assert_eq!(
            chunk.iter().map(|p| p.orders.len()).collect::<Vec<_>>(),
            [3, 2]
        );
        drop(chunk);
        // The transaction's second starts with its first chunk; once past, it takes no more.
        tx.send((page(1), room.clone().try_acquire_many_owned(1).unwrap()))
            .unwrap();
        std::thread::sleep(GROUP_TIME + Duration::from_millis(50));
        assert!(feed.next_chunk().is_none());
        assert_eq!(feed.done.len(), 2);
    }
}
