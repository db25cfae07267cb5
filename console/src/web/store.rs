//! The session store: tower-sessions' records in memory, with expired
//! sessions swept out and a cap on how many are kept, so requests that
//! never sign in cannot grow it without bound.

use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, ExpiredDeletion, Result, SessionStore};

#[derive(Clone, Debug)]
pub struct BoundedStore {
    records: Arc<Mutex<HashMap<Id, Record>>>,
    cap: usize,
}

impl BoundedStore {
    pub fn new(cap: usize) -> BoundedStore {
        BoundedStore {
            records: Arc::default(),
            cap,
        }
    }
}

fn active(r: &Record) -> bool {
    r.expiry_date > OffsetDateTime::now_utc()
}

#[async_trait::async_trait]
impl SessionStore for BoundedStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        let mut all = self.records.lock().await;
        if all.len() >= self.cap {
            all.retain(|_, r| active(r));
            if all.len() >= self.cap {
                return Err(Error::Backend("too many sessions".into()));
            }
        }
        while all.contains_key(&record.id) {
            record.id = Id::default();
        }
        all.insert(record.id, record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let mut all = self.records.lock().await;
        if !all.contains_key(&record.id) && all.len() >= self.cap {
            return Err(Error::Backend("too many sessions".into()));
        }
        all.insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        Ok(self
            .records
            .lock()
            .await
            .get(id)
            .filter(|r| active(r))
            .cloned())
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.records.lock().await.remove(id);
        Ok(())
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for BoundedStore {
    async fn delete_expired(&self) -> Result<()> {
        self.records.lock().await.retain(|_, r| active(r));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seconds: i64) -> Record {
        Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc()
                + tower_sessions::cookie::time::Duration::seconds(seconds),
        }
    }

    #[tokio::test]
    async fn capped_and_swept() {
        let s = BoundedStore::new(2);
        s.create(&mut record(60)).await.unwrap();
        s.create(&mut record(-1)).await.unwrap();
        // Full: the expired one is swept to make room.
        s.create(&mut record(60)).await.unwrap();
        assert!(s.create(&mut record(60)).await.is_err());
        s.delete_expired().await.unwrap();
        assert_eq!(s.records.lock().await.len(), 2);
    }
}
