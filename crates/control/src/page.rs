//! Keyset pagination over ascending integer ids: stable under inserts, no OFFSET scans.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// Continue after the row with this id (in the list's order).
    pub after: Option<i64>,
    pub limit: u64,
    /// Newest first (descending ids) instead of oldest first.
    pub descending: bool,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { after: None, limit: DEFAULT_LIMIT, descending: false }
    }
}

impl PageRequest {
    pub fn newest_first(self) -> Self {
        Self { descending: true, ..self }
    }
}

/// One page of rows and the id to continue after, when there are more.
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_after: Option<i64>,
}

impl<T> Paged<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged { items: self.items.into_iter().map(f).collect(), next_after: self.next_after }
    }
}

/// Runs `select` ordered by `id_col`, one row more than asked to learn whether a next page
/// exists.
pub async fn fetch<E, C>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    id_col: C,
    id_of: fn(&E::Model) -> i64,
    page: PageRequest,
) -> Result<Paged<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    let mut select = if page.descending { select.order_by_desc(id_col) } else { select.order_by_asc(id_col) };
    select = select.limit(page.limit + 1);
    if let Some(after) = page.after {
        select = select.filter(if page.descending { id_col.lt(after) } else { id_col.gt(after) });
    }
    let mut items = select.all(db).await?;
    let next_after = if items.len() as u64 > page.limit {
        items.truncate(page.limit as usize);
        items.last().map(id_of)
    } else {
        None
    };
    Ok(Paged { items, next_after })
}
