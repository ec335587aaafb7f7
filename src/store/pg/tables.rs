//! The tables `ordersync copy` moves from SQLite into PostgreSQL and `verify` counts: each one's
//! columns (the same names on both engines), key and `jsonb` columns, parents before children.

/// A table copied: its columns (the same names on both engines) and its key, in copy order.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [&'static str],
    pub(super) key: &'static [&'static str],
    /// The columns that are `jsonb` on PostgreSQL.
    pub(super) json: &'static [&'static str],
}

/// Every table, parents before children (sub_orders refer to orders).
#[rustfmt::skip]
pub(super) const TABLES: [Table; 8] = [
    Table {
        name: "orders",
        columns: &[
            "source", "order_id", "pipeline", "kind", "status", "status_raw", "pay_amount",
            "refund_amount", "commission", "created_at", "paid_at", "updated_at", "refunded_at",
            "settled_at", "confirmed_at", "shop_id", "shop_name", "product_id", "product_name",
            "item_num", "ad_cost", "ad_plays", "ad_gmv", "ad_roi", "raw", "first_seen_at",
            "synced_at", "last_seen_at",
        ],
        key: &["source", "order_id"],
        json: &["raw"],
    },
    Table {
        name: "sub_orders",
        columns: &[
            "source", "order_id", "sub_order_id", "sku_id", "product_id", "product_name",
            "item_num", "pay_amount", "status", "status_raw", "raw", "refund_amount",
            "commission", "updated_at",
        ],
        key: &["source", "order_id", "sub_order_id"],
        json: &["raw"],
    },
    Table {
        name: "order_status_history",
        columns: &["id", "source", "order_id", "status", "status_raw", "observed_at"],
        key: &["id"],
        json: &[],
    },
    Table {
        name: "runs",
        columns: &[
            "id", "pipeline", "command", "scope", "pid", "started_at", "finished_at", "outcome",
            "rows_seen", "rows_changed", "requests", "windows_done", "error", "rows_rejected",
            "detail",
        ],
        key: &["id"],
        json: &[],
    },
    Table {
        name: "checkpoints",
        columns: &["pipeline", "scope", "range_start", "range_end", "watermark", "updated_at"],
        key: &["pipeline", "scope"],
        json: &[],
    },
    Table {
        name: "coverage",
        columns: &["pipeline", "scope", "range_start", "range_end"],
        key: &["pipeline", "scope", "range_start"],
        json: &[],
    },
    Table {
        name: "track_windows",
        columns: &["pipeline", "scope", "window_start", "window_end", "cursor", "done"],
        key: &["pipeline", "scope", "window_start"],
        json: &[],
    },
    Table {
        name: "rejected_rows",
        columns: &[
            "id", "pipeline", "source", "scope", "window_start", "window_end", "cursor",
            "order_id", "reason", "raw", "fingerprint", "first_seen_at", "last_seen_at",
            "times_seen", "resolved_at",
        ],
        key: &["id"],
        json: &[],
    },
];

/// The tables whose key PostgreSQL generates for new rows: their sequences start after the copy.
pub(super) const IDENTITY_TABLES: [&str; 3] = ["order_status_history", "runs", "rejected_rows"];
