//! The normalised rows every source produces and the store writes: orders, sub-orders, statuses.
//!
//! A source turns one upstream row into an [`OrderRow`] (with its [`SubOrderRow`] lines) and never
//! touches the database; the store takes these rows as they are. Money is `i64` fen, times are
//! Beijing `NaiveDateTime`, ids are strings.

use chrono::NaiveDateTime;

use std::fmt;
use std::str::FromStr;

/// The five upstreams, as a closed enum. What each one's API allows and needs is in `sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Sxt,
    Miaoyouquan,
    Unidesk,
    Veapi,
    Damaijia,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Sxt,
        SourceKind::Miaoyouquan,
        SourceKind::Unidesk,
        SourceKind::Veapi,
        SourceKind::Damaijia,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Sxt => "sxt",
            SourceKind::Miaoyouquan => "miaoyouquan",
            SourceKind::Unidesk => "unidesk",
            SourceKind::Veapi => "veapi",
            SourceKind::Damaijia => "damaijia",
        }
    }

    /// Whether one call answers every order (no paging, no time filter): a run is then one request,
    /// and the watermark is the time of the snapshot.
    pub fn is_snapshot(self) -> bool {
        self == SourceKind::Sxt
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("must be one of sxt, miaoyouquan, unidesk, veapi, damaijia, got {s:?}")
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sale,
    Affiliate,
    Ad,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sale => "sale",
            Kind::Affiliate => "affiliate",
            Kind::Ad => "ad",
        }
    }
}

/// The normalised status vocabulary of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Paid,
    Presale,
    Shipped,
    Completed,
    Settled,
    Refunded,
    Closed,
    AdUnpaid,
    AdCreating,
    AdReviewing,
    AdRejected,
    AdDelivering,
    AdTerminated,
    AdCompleted,
    AdEnded,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Paid => "paid",
            Status::Presale => "presale",
            Status::Shipped => "shipped",
            Status::Completed => "completed",
            Status::Settled => "settled",
            Status::Refunded => "refunded",
            Status::Closed => "closed",
            Status::AdUnpaid => "ad_unpaid",
            Status::AdCreating => "ad_creating",
            Status::AdReviewing => "ad_reviewing",
            Status::AdRejected => "ad_rejected",
            Status::AdDelivering => "ad_delivering",
            Status::AdTerminated => "ad_terminated",
            Status::AdCompleted => "ad_completed",
            Status::AdEnded => "ad_ended",
            Status::Unknown => "unknown",
        }
    }

    /// How far along a sale is, for choosing one status for an order whose lines differ:
    /// refunded and closed lines rank lowest (the order is refunded only when all its lines are).
    pub fn progress(self) -> u8 {
        match self {
            Status::Refunded | Status::Closed | Status::Unknown => 0,
            Status::Pending => 1,
            Status::Presale => 2,
            Status::Paid => 3,
            Status::Shipped => 4,
            Status::Completed => 5,
            Status::Settled => 6,
            _ => 1,
        }
    }

    pub fn parse(text: &str) -> Status {
        const ALL: [Status; 17] = [
            Status::Pending,
            Status::Paid,
            Status::Presale,
            Status::Shipped,
            Status::Completed,
            Status::Settled,
            Status::Refunded,
            Status::Closed,
            Status::AdUnpaid,
            Status::AdCreating,
            Status::AdReviewing,
            Status::AdRejected,
            Status::AdDelivering,
            Status::AdTerminated,
            Status::AdCompleted,
            Status::AdEnded,
            Status::Unknown,
        ];
        ALL.into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or(Status::Unknown)
    }
}

/// One order as the store receives it. `raw` is the upstream JSON row (PII already masked by the
/// source where the source has any).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub source: SourceKind,
    pub order_id: String,
    pub kind: Kind,
    pub status: Status,
    pub status_raw: String,
    pub pay_amount: Option<i64>,
    pub refund_amount: Option<i64>,
    pub commission: Option<i64>,
    pub created_at: Option<NaiveDateTime>,
    pub paid_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
    pub refunded_at: Option<NaiveDateTime>,
    pub settled_at: Option<NaiveDateTime>,
    pub confirmed_at: Option<NaiveDateTime>,
    pub shop_id: Option<String>,
    pub shop_name: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub item_num: Option<i64>,
    pub ad_cost: Option<i64>,
    pub ad_plays: Option<i64>,
    pub ad_gmv: Option<i64>,
    pub ad_roi: Option<String>,
    pub raw: String,
    pub sub_orders: Vec<SubOrderRow>,
    /// The row carries only some of the order's lines (unidesk sends SKU sub-orders, and one main
    /// order's lines may arrive on different pages or windows). The store then keeps each line on
    /// its own and derives the order's money, status, update time and `raw` from all stored lines.
    pub partial: bool,
}

impl OrderRow {
    /// An order with only its identity set; sources fill in what they have.
    pub fn new(source: SourceKind, order_id: String, kind: Kind, raw: String) -> Self {
        OrderRow {
            source,
            order_id,
            kind,
            status: Status::Unknown,
            status_raw: String::new(),
            pay_amount: None,
            refund_amount: None,
            commission: None,
            created_at: None,
            paid_at: None,
            updated_at: None,
            refunded_at: None,
            settled_at: None,
            confirmed_at: None,
            shop_id: None,
            shop_name: None,
            product_id: None,
            product_name: None,
            item_num: None,
            ad_cost: None,
            ad_plays: None,
            ad_gmv: None,
            ad_roi: None,
            raw,
            sub_orders: Vec::new(),
            partial: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubOrderRow {
    pub sub_order_id: String,
    pub sku_id: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub item_num: Option<i64>,
    pub pay_amount: Option<i64>,
    pub status: Status,
    pub status_raw: String,
    /// The line's own upstream row; empty when the line *is* the order (one product per order:
    /// veapi, miaoyouquan), stored as NULL rather than a second copy of `orders.raw`.
    pub raw: String,
    /// Only for lines of a `partial` order: what the order's totals are summed from.
    pub refund_amount: Option<i64>,
    pub commission: Option<i64>,
    pub updated_at: Option<NaiveDateTime>,
}

/// An upstream row that could not be normalised: kept in `rejected_rows` with why, so that one bad
/// row costs itself and never its page or its pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// The row's order id, when it could be read.
    pub order_id: Option<String>,
    /// What is wrong with it, naming the field.
    pub reason: String,
    /// The row's text as it came (a source with customer PII hides it first).
    pub raw: String,
}
