-- ordersync database schema. Embedded in the binary; each `-- migration: N` section is applied once,
-- in order, in one transaction that also sets PRAGMA user_version = N.
-- Conventions: money is INTEGER fen; times are TEXT 'YYYY-MM-DD HH:MM:SS' Beijing time (window
-- bounds keep milliseconds); NULL when upstream has none; ids are TEXT; raw is the upstream JSON row.

-- migration: 1

CREATE TABLE orders (
    source        TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('sale', 'affiliate', 'ad')),
    status        TEXT NOT NULL,
    status_raw    TEXT,
    pay_amount    INTEGER,
    refund_amount INTEGER,
    commission    INTEGER,
    created_at    TEXT,
    paid_at       TEXT,
    updated_at    TEXT,
    refunded_at   TEXT,
    settled_at    TEXT,
    confirmed_at  TEXT,
    shop_id       TEXT,
    shop_name     TEXT,
    product_id    TEXT,
    product_name  TEXT,
    item_num      INTEGER,
    ad_cost       INTEGER,
    ad_plays      INTEGER,
    ad_gmv        INTEGER,
    ad_roi        TEXT,
    raw           TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    PRIMARY KEY (source, order_id)
) WITHOUT ROWID;

CREATE INDEX orders_by_paid_at ON orders (paid_at);
CREATE INDEX orders_by_pipeline ON orders (pipeline, updated_at);

CREATE TABLE sub_orders (
    source       TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    sub_order_id TEXT NOT NULL,
    sku_id       TEXT,
    product_id   TEXT,
    product_name TEXT,
    item_num     INTEGER,
    pay_amount   INTEGER,
    status       TEXT NOT NULL,
    status_raw   TEXT,
    raw          TEXT NOT NULL,
    PRIMARY KEY (source, order_id, sub_order_id),
    FOREIGN KEY (source, order_id) REFERENCES orders (source, order_id)
) WITHOUT ROWID;

-- One row per observed change of an order's status_raw, its first sighting included.
CREATE TABLE order_status_history (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    status      TEXT NOT NULL,
    status_raw  TEXT,
    observed_at TEXT NOT NULL
);

CREATE INDEX order_status_history_by_order ON order_status_history (source, order_id);

-- Resumable state of one track of a pipeline: scope 'live', or 'backfill FROM..TO' for one backfill
-- range. `watermark` is the end of the last finished window; `window_*`/`cursor` describe the
-- window in progress (NULL when none).
CREATE TABLE checkpoints (
    pipeline     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    range_start  TEXT,
    range_end    TEXT,
    watermark    TEXT,
    window_start TEXT,
    window_end   TEXT,
    cursor       TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (pipeline, scope)
);

-- Finished time ranges per pipeline and scope, merged as they grow: [range_start, range_end).
-- A range here was committed in the same transaction as the last page of its window.
CREATE TABLE coverage (
    pipeline    TEXT NOT NULL,
    scope       TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end   TEXT NOT NULL,
    PRIMARY KEY (pipeline, scope, range_start)
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    pipeline     TEXT NOT NULL,
    command      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'interrupted', 'abandoned')),
    rows_seen    INTEGER NOT NULL DEFAULT 0,
    rows_changed INTEGER NOT NULL DEFAULT 0,
    requests     INTEGER NOT NULL DEFAULT 0,
    windows_done INTEGER NOT NULL DEFAULT 0,
    error        TEXT
);

CREATE INDEX runs_by_pipeline ON runs (pipeline, id);

-- One row per Beijing day (by paid_at, else created_at), source and pipeline. All money in fen.
-- gmv and paid_orders leave out orders that were never paid (pending, closed, ad_unpaid).
CREATE VIEW daily_summary AS
SELECT
    substr(COALESCE(paid_at, created_at), 1, 10) AS day,
    source,
    pipeline,
    COUNT(*) AS orders,
    SUM(status NOT IN ('pending', 'closed', 'ad_unpaid')) AS paid_orders,
    SUM(CASE WHEN status NOT IN ('pending', 'closed', 'ad_unpaid') THEN COALESCE(pay_amount, 0) ELSE 0 END) AS gmv,
    SUM(CASE
            WHEN refund_amount IS NOT NULL THEN refund_amount
            WHEN status = 'refunded' THEN COALESCE(pay_amount, 0)
            ELSE 0
        END) AS refunds,
    SUM(COALESCE(commission, 0)) AS commission,
    SUM(COALESCE(ad_cost, 0)) AS ad_cost,
    SUM(COALESCE(ad_gmv, 0)) AS ad_gmv
FROM orders
GROUP BY day, source, pipeline;

-- Each sub-order with its order's source, pipeline, status, paid_at and shop_name.
CREATE VIEW order_lines AS
SELECT
    s.source,
    s.order_id,
    s.sub_order_id,
    o.pipeline,
    o.status AS order_status,
    o.paid_at,
    o.shop_name,
    s.sku_id,
    s.product_id,
    s.product_name,
    s.item_num,
    s.pay_amount,
    s.status,
    s.status_raw
FROM sub_orders AS s
JOIN orders AS o ON o.source = s.source AND o.order_id = s.order_id;

-- migration: 2

-- Lines of orders that arrive line by line (unidesk SKU sub-orders): what the order's totals are
-- summed from, and the line's own upstream time so that an older copy of a line never wins.
ALTER TABLE sub_orders ADD COLUMN refund_amount INTEGER;
ALTER TABLE sub_orders ADD COLUMN commission INTEGER;
ALTER TABLE sub_orders ADD COLUMN updated_at TEXT;

-- migration: 3

-- orders and sub_orders become rowid tables. WITHOUT ROWID stores each row, raw JSON included,
-- inside the primary-key B-tree, so every new order was a random insert of a kilobyte-sized row:
-- half-empty pages, page splits and writes all over the file. As rowid tables new rows append at
-- the end and only the small (source, order_id) key index takes random inserts; the primary key,
-- the upsert's ON CONFLICT target and the foreign key are unchanged.
DROP VIEW daily_summary;
DROP VIEW order_lines;

CREATE TABLE orders_v3 (
    source        TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('sale', 'affiliate', 'ad')),
    status        TEXT NOT NULL,
    status_raw    TEXT,
    pay_amount    INTEGER,
    refund_amount INTEGER,
    commission    INTEGER,
    created_at    TEXT,
    paid_at       TEXT,
    updated_at    TEXT,
    refunded_at   TEXT,
    settled_at    TEXT,
    confirmed_at  TEXT,
    shop_id       TEXT,
    shop_name     TEXT,
    product_id    TEXT,
    product_name  TEXT,
    item_num      INTEGER,
    ad_cost       INTEGER,
    ad_plays      INTEGER,
    ad_gmv        INTEGER,
    ad_roi        TEXT,
    raw           TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    PRIMARY KEY (source, order_id)
);

INSERT INTO orders_v3 SELECT * FROM orders;

CREATE TABLE sub_orders_v3 (
    source       TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    sub_order_id TEXT NOT NULL,
    sku_id       TEXT,
    product_id   TEXT,
    product_name TEXT,
    item_num     INTEGER,
    pay_amount   INTEGER,
    status       TEXT NOT NULL,
    status_raw   TEXT,
    raw          TEXT,  -- NULL when the line is the order itself: see orders.raw
    refund_amount INTEGER,
    commission    INTEGER,
    updated_at    TEXT,
    PRIMARY KEY (source, order_id, sub_order_id),
    FOREIGN KEY (source, order_id) REFERENCES orders (source, order_id)
);

INSERT INTO sub_orders_v3 SELECT * FROM sub_orders;
-- Single-line orders kept a second copy of the order's row on their line.
UPDATE sub_orders_v3 SET raw = NULL
WHERE sub_order_id = order_id
  AND raw = (SELECT o.raw FROM orders AS o WHERE o.source = sub_orders_v3.source AND o.order_id = sub_orders_v3.order_id);

DROP TABLE sub_orders;
DROP TABLE orders;
ALTER TABLE orders_v3 RENAME TO orders;
ALTER TABLE sub_orders_v3 RENAME TO sub_orders;

CREATE INDEX orders_by_paid_at ON orders (paid_at);
CREATE INDEX orders_by_pipeline ON orders (pipeline, updated_at);

-- One row per Beijing day (by paid_at, else created_at), source and pipeline. All money in fen.
-- gmv and paid_orders leave out orders that were never paid (pending, closed, ad_unpaid).
CREATE VIEW daily_summary AS
SELECT
    substr(COALESCE(paid_at, created_at), 1, 10) AS day,
    source,
    pipeline,
    COUNT(*) AS orders,
    SUM(status NOT IN ('pending', 'closed', 'ad_unpaid')) AS paid_orders,
    SUM(CASE WHEN status NOT IN ('pending', 'closed', 'ad_unpaid') THEN COALESCE(pay_amount, 0) ELSE 0 END) AS gmv,
    SUM(CASE
            WHEN refund_amount IS NOT NULL THEN refund_amount
            WHEN status = 'refunded' THEN COALESCE(pay_amount, 0)
            ELSE 0
        END) AS refunds,
    SUM(COALESCE(commission, 0)) AS commission,
    SUM(COALESCE(ad_cost, 0)) AS ad_cost,
    SUM(COALESCE(ad_gmv, 0)) AS ad_gmv
FROM orders
GROUP BY day, source, pipeline;

-- Each sub-order with its order's source, pipeline, status, paid_at and shop_name.
CREATE VIEW order_lines AS
SELECT
    s.source,
    s.order_id,
    s.sub_order_id,
    o.pipeline,
    o.status AS order_status,
    o.paid_at,
    o.shop_name,
    s.sku_id,
    s.product_id,
    s.product_name,
    s.item_num,
    s.pay_amount,
    s.status,
    s.status_raw
FROM sub_orders AS s
JOIN orders AS o ON o.source = s.source AND o.order_id = s.order_id;


-- migration: 4

-- Rows upstream sent that could not be normalised (a missing or malformed id, an amount that is not
-- a number, nesting deeper than SQLite's JSON functions read, ...): kept here in the same
-- transaction as their page's good rows and checkpoint, so one bad row costs itself and never its
-- page or its pipeline. The same row read again (same source and text) is not added twice: it is
-- seen again. `resolved_at` is set when a good copy of the same order is stored later. `raw` is the
-- row's text as it came (personal fields hidden); it is not always valid JSON.
CREATE TABLE rejected_rows (
    id            INTEGER PRIMARY KEY,
    pipeline      TEXT NOT NULL,
    source        TEXT NOT NULL,
    scope         TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    window_end    TEXT NOT NULL,
    cursor        TEXT NOT NULL,
    order_id      TEXT,
    reason        TEXT NOT NULL,
    raw           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    times_seen    INTEGER NOT NULL DEFAULT 1,
    resolved_at   TEXT,
    UNIQUE (pipeline, fingerprint)
);

CREATE INDEX rejected_rows_open ON rejected_rows (pipeline, source, order_id) WHERE resolved_at IS NULL;

ALTER TABLE runs ADD COLUMN rows_rejected INTEGER NOT NULL DEFAULT 0;

-- migration: 5

-- When upstream last returned the order. A rescan or a backfill stamps every order it reads; a live
-- sync, which re-reads its lookback every few minutes, stamps an order at most once a Beijing day
-- (so re-reading writes nothing). Orders are never deleted: one whose last_seen_at is older than the
-- start of the last rescan that covered its update time is one upstream no longer returns.
ALTER TABLE orders ADD COLUMN last_seen_at TEXT;
UPDATE orders SET last_seen_at = synced_at;

-- What a run that fetched nothing did, in words: a rewind's old and new watermark and who asked.
ALTER TABLE runs ADD COLUMN detail TEXT;

-- migration: 6

-- The windows of a track in progress, each with the cursor of its next page. A run that reads
-- `concurrency` windows at once registers its whole plan here (first cursors) before it fetches; one
-- that reads one at a time records a window with its first committed page, as before. A window's
-- last page marks it `done` in the transaction that adds it to `coverage`, and the watermark moves
-- to where the first window not done starts — or, when every one is done, to the end of the last —
-- so it never passes a window that has not been read, whatever order windows finish in. Done
-- windows behind the watermark are deleted.
-- checkpoints.window_start/window_end/cursor held the one window in progress before; they move here.
CREATE TABLE track_windows (
    pipeline     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    cursor       TEXT NOT NULL,
    done         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pipeline, scope, window_start)
);

INSERT INTO track_windows (pipeline, scope, window_start, window_end, cursor)
SELECT pipeline, scope, window_start, window_end, cursor FROM checkpoints
WHERE window_start IS NOT NULL AND window_end IS NOT NULL AND cursor IS NOT NULL;

ALTER TABLE checkpoints DROP COLUMN window_start;
ALTER TABLE checkpoints DROP COLUMN window_end;
ALTER TABLE checkpoints DROP COLUMN cursor;
