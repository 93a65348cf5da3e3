//! Keyset pagination over ascending integer ids: stable under inserts, no OFFSET scans.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// Return rows with ids greater than this one.
    pub after: Option<i64>,
    pub limit: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { after: None, limit: DEFAULT_LIMIT }
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
    let mut select = select.order_by_asc(id_col).limit(page.limit + 1);
    if let Some(after) = page.after {
        select = select.filter(id_col.gt(after));
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
