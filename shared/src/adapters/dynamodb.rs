//! The DynamoDB store: one table serving every access pattern of DESIGN §10.
//!
//! Item layout (`pk`, `sk` strings; the item's JSON in `doc`):
//!
//! | item | pk | sk | GSI keys |
//! |---|---|---|---|
//! | grant | `GRANT#<id>` | `#GRANT` | gsi1 `REQ#<requester>`/id · gsi2 `STATUS#<status>`/id · gsi3 `TICKET#<connection>#<key>`/id (bound grants) · gsi4 `ACTIVE#<requester>#<resource>`/id (active grants only) · gsi5 `GRANTS`/id · gsi6 `OPEN#<connection>`/`<key>#<id>` (open bound grants only: reconciliation) |
//! | ticket id alias | `TICKETID#<connection>#<ticket id>` | `GRANT#<id>` | – (written with the grant, in its insert transaction, when it has a `ticket_id`; `doc` is the grant id) |
//! | audit event | `GRANT#<id>` | `EVENT#<version, 10 digits>` | – |
//! | resource | `RESOURCE#<id>` | `#RESOURCE` | gsi5 `RESOURCES`/id (`version` attribute: 1 when absent, written before versions) |
//! | connection | `CONNECTION#<id>` | `#CONNECTION` | gsi5 `CONNECTIONS`/id (settings in `doc`, authorization status in `auth`, JSON) |
//! | webhook delivery | `DELIVERY#<key>` | `#DELIVERY` | – (`ttl` attribute: DynamoDB deletes it, days late at worst) |
//! | reconciliation position | `STATE#reconcile` | `#STATE` | – |
//!
//! Grants, resources and delivery records also carry `writer`, a random token of the call that wrote them last: when the
//! SDK retries a conditional write whose first attempt was applied but not answered, the retry's condition
//! fails, and the token tells "my own earlier attempt" from "somebody else".
//!
//! Grant ids are ULIDs, so every GSI sort key orders by request time: "newest first" is a reverse query. Grants
//! carry `status` and `version` as attributes: every state change is a `PutItem` (or a `TransactWriteItems` with
//! its audit event) conditioned on both. GSIs project all attributes and are eventually consistent; where
//! that matters (rule 8) candidates are re-read with strongly consistent `GetItem`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use time::OffsetDateTime;

mod connections;
#[cfg(test)]
mod cursor_props;

use super::aws_errors;
use super::{decode_cursor, encode_cursor};
use crate::domain::grant::Expected;
use crate::domain::reconcile::ReconcileState;
use crate::domain::side_effect::FailureClass;
use crate::domain::{AuditEvent, Grant, GrantStatus, Resource, TicketRef};
use crate::ports::{
    GrantFilter, GrantStore, Page, ResourceExpected, StoreError, VersionedResource,
};

type Item = HashMap<String, AttributeValue>;

/// The global secondary indexes: (name, partition key, sort key).
pub const INDEXES: [(&str, &str, &str); 6] = [
    ("gsi1", "gsi1pk", "gsi1sk"),
    ("gsi2", "gsi2pk", "gsi2sk"),
    ("gsi3", "gsi3pk", "gsi3sk"),
    ("gsi4", "gsi4pk", "gsi4sk"),
    ("gsi5", "gsi5pk", "gsi5sk"),
    ("gsi6", "gsi6pk", "gsi6sk"),
];
const BY_REQUESTER: usize = 0;
const BY_STATUS: usize = 1;
const BY_TICKET: usize = 2;
const BY_ACCESS: usize = 3;
const BY_TYPE: usize = 4;
const OPEN_BOUND: usize = 5;

/// The attribute DynamoDB's TTL deletes by (webhook delivery records only).
pub const TTL_ATTRIBUTE: &str = "ttl";

/// How many queries one list page may take before it returns a short page with a cursor.
const MAX_ROUND_TRIPS: usize = 20;

/// One query: the index (`None`: the table, read consistently), its partition, the direction, and an optional
/// sort-key prefix.
struct QuerySpec<'a> {
    index: Option<usize>,
    partition: String,
    forward: bool,
    sk_prefix: Option<&'a str>,
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A failed call, classified (`adapters::aws_errors`): `Unavailable` when trying again can help (throttling,
/// 5xx, a timeout), `Rejected` when it cannot. Callers read conditional failures before this.
fn store_error<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match aws_errors::classify(&e) {
        FailureClass::Retryable | FailureClass::Conflict => {
            StoreError::Unavailable(aws_errors::describe(&e))
        }
        FailureClass::Permanent => StoreError::Rejected(aws_errors::describe(&e)),
    }
}

/// A request the SDK's builders refused (a required field missing): a bug, the same every time.
fn unbuildable(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Rejected(format!("the request could not be built: {e}"))
}

/// `CancellationReasons` codes of a cancelled transaction that trying again can clear.
const RETRYABLE_CANCELLATIONS: [&str; 5] = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "TransactionConflict",
    "RequestLimitExceeded",
    "InternalServerError",
];

/// A failed `TransactWriteItems`. A cancelled transaction is read by its reasons, item by item: a failed condition
/// is `condition_failed` (somebody else wrote first: a conflict, or an id already taken), whatever else was
/// cancelled alongside; throttling, a concurrent transaction on the same item or a server error is
/// `Unavailable`; anything else (a validation error, an item collection too large) is `Rejected`.
fn transaction_error(
    e: SdkError<TransactWriteItemsError, HttpResponse>,
    condition_failed: StoreError,
) -> StoreError {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        e.as_service_error()
    else {
        return store_error(e);
    };
    let reasons: Vec<&str> = cancelled
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .collect();
    let detail = format!("transaction cancelled: [{}]", reasons.join(", "));
    if reasons.contains(&"ConditionalCheckFailed") {
        condition_failed
    } else if reasons.iter().any(|r| RETRYABLE_CANCELLATIONS.contains(r)) {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Rejected(detail)
    }
}

fn doc_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("item without doc".into()))?;
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A resource item with its version (`version`, absent on an item written before versions: version 1).
fn versioned_resource_of(item: &Item) -> Result<VersionedResource, StoreError> {
    let resource: Resource = doc_of(item)?;
    let version = match item.get("version") {
        None => 1,
        Some(v) => v.as_n().ok().and_then(|n| n.parse().ok()).ok_or_else(|| {
            StoreError::Corrupt(format!("resource {}: a bad version", resource.id))
        })?,
    };
    Ok(VersionedResource { resource, version })
}

fn resource_key(id: &str) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("RESOURCE#{id}"))),
        ("sk".into(), s("#RESOURCE")),
    ])
}

/// The condition of creating a resource.
const RESOURCE_ABSENT: &str = "attribute_not_exists(pk)";

/// The condition of writing over a resource stored at `version` (`:version`, `#version`): version 1 is also a
/// resource written before versions existed, which has no `version` attribute.
fn resource_at(version: u64) -> &'static str {
    if version == 1 {
        "attribute_exists(pk) AND (#version = :version OR attribute_not_exists(#version))"
    } else {
        "#version = :version"
    }
}

fn grant_key(id: &str) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("GRANT#{id}"))),
        ("sk".into(), s("#GRANT")),
    ])
}

fn grant_item(grant: &Grant) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(grant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = grant_key(&grant.id);
    item.insert("doc".into(), s(doc));
    item.insert("status".into(), s(grant.status.as_str()));
    item.insert(
        "version".into(),
        AttributeValue::N(grant.version.to_string()),
    );
    let mut index = |i: usize, pk: String| {
        item.insert(INDEXES[i].1.into(), s(pk));
        item.insert(INDEXES[i].2.into(), s(grant.id.clone()));
    };
    index(BY_REQUESTER, format!("REQ#{}", grant.requester));
    index(BY_STATUS, format!("STATUS#{}", grant.status.as_str()));
    if let Some(t) = &grant.ticket {
        index(BY_TICKET, ticket_pk(t));
    }
    if grant.status == GrantStatus::Active {
        index(BY_ACCESS, access_pk(&grant.requester, &grant.resource));
    }
    index(BY_TYPE, "GRANTS".into());
    if let Some(t) = grant.ticket.as_ref().filter(|_| grant.status.is_open()) {
        item.insert(
            INDEXES[OPEN_BOUND].1.into(),
            s(open_bound_pk(&t.connection)),
        );
        item.insert(
            INDEXES[OPEN_BOUND].2.into(),
            s(format!("{}#{}", t.key, grant.id)),
        );
    }
    Ok(item)
}

fn ticket_pk(t: &TicketRef) -> String {
    format!("TICKET#{}#{}", t.connection, t.key)
}

fn ticket_id_pk(connection: &str, ticket_id: &str) -> String {
    format!("TICKETID#{connection}#{ticket_id}")
}

/// The alias that finds a grant by its ticket's stable id. A base-table item rather than a GSI: the id is set
/// once, when the grant is requested, so the alias is written with the grant in one transaction, and a stack
/// upgrade never has to add two GSIs in one CloudFormation update (it cannot).
fn ticket_id_alias(grant: &Grant) -> Result<Option<Item>, StoreError> {
    let (Some(ticket), Some(id)) = (&grant.ticket, &grant.ticket_id) else {
        return Ok(None);
    };
    let doc = serde_json::to_string(&grant.id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Some(HashMap::from([
        ("pk".into(), s(ticket_id_pk(&ticket.connection, id))),
        ("sk".into(), s(format!("GRANT#{}", grant.id))),
        ("doc".into(), s(doc)),
    ])))
}

fn open_bound_pk(connection: &str) -> String {
    format!("OPEN#{connection}")
}

/// The gsi6 sort keys of a ticket are `<key>#<grant id>`. Keys are `[A-Za-z0-9_-]` and grant ids ULIDs
/// (`[0-9A-Z]`), all above `#` and below `~`: so every sort key of a ticket sorts below `<key>#~`, and every
/// key that sorts after `<key>` sorts above it. "Strictly after key K" is therefore `sk > "K#~"`, and the
/// order of keys is plain byte order, as in the embedded store.
fn after_key(key: &str) -> String {
    format!("{key}#~")
}

const RECONCILE_STATE_PK: &str = "STATE#reconcile";
const STATE_SK: &str = "#STATE";

fn access_pk(requester: &str, resource: &str) -> String {
    format!("ACTIVE#{requester}#{resource}")
}

fn event_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(HashMap::from([
        ("pk".into(), s(format!("GRANT#{}", event.grant_id))),
        ("sk".into(), s(format!("EVENT#{}", event.sort_key()))),
        ("doc".into(), s(doc)),
    ]))
}

/// A cursor is the query's `LastEvaluatedKey`, all string attributes.
fn encode_key(key: &Item) -> String {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    encode_cursor(&plain)
}

fn decode_key(cursor: &str, expected: &[&str]) -> Result<Item, StoreError> {
    let plain: HashMap<String, String> = decode_cursor(cursor)?;
    if plain.len() != expected.len() || !expected.iter().all(|k| plain.contains_key(*k)) {
        return Err(StoreError::InvalidCursor);
    }
    Ok(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with its indexes (tests, and operators not using the SAM template). The template's
    /// definition is checked against this one by a test.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let mut attributes = vec![("pk", "sk")];
        attributes.extend(INDEXES.iter().map(|(_, pk, sk)| (*pk, *sk)));
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for (pk, sk) in &attributes {
            for name in [pk, sk] {
                request = request.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(unbuildable)?,
                );
            }
        }
        request = request.set_key_schema(Some(key_schema("pk", "sk")?));
        for (name, pk, sk) in INDEXES {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(key_schema(pk, sk)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(unbuildable)?,
            );
        }
        request.send().await.map_err(store_error)?;
        Ok(())
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }

    /// Deletes the item at `key` when `condition` holds, its `#version` placeholder naming `version_attribute`
    /// and `:version` being `version`: a lost condition is [`StoreError::Conflict`], except that a retried
    /// delete whose first attempt was applied finds nothing, and gone is what was asked.
    async fn delete_at_version(
        &self,
        key: Item,
        condition: &str,
        version_attribute: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let attempts = Attempts::default();
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.clone()))
            .condition_expression(condition)
            .expression_attribute_names("#version", version_attribute)
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                if attempts.retried() && self.get_item(key).await?.is_none() {
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Queries an index (or the table with `index = None`) forward or backward, filtering client-side, until
    /// `limit` matches or the partition ends.
    #[allow(clippy::too_many_arguments)]
    async fn query_page<T, F>(
        &self,
        spec: QuerySpec<'_>,
        limit: usize,
        cursor: Option<&str>,
        keep: F,
    ) -> Result<Page<T>, StoreError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&T) -> bool,
    {
        self.query_page_read(spec, limit, cursor, doc_of, keep)
            .await
    }

    /// [`DynamoStore::query_page`] reading each item with `read` instead of its `doc` alone.
    async fn query_page_read<T, R, F>(
        &self,
        spec: QuerySpec<'_>,
        limit: usize,
        cursor: Option<&str>,
        read: R,
        keep: F,
    ) -> Result<Page<T>, StoreError>
    where
        R: Fn(&Item) -> Result<T, StoreError>,
        F: Fn(&T) -> bool,
    {
        let QuerySpec {
            index,
            partition,
            forward,
            sk_prefix,
        } = spec;
        let (pk_attr, sk_attr) = match index {
            Some(i) => (INDEXES[i].1, INDEXES[i].2),
            None => ("pk", "sk"),
        };
        let key_names: Vec<&str> = match index {
            Some(i) => vec!["pk", "sk", INDEXES[i].1, INDEXES[i].2],
            None => vec!["pk", "sk"],
        };
        let mut start = cursor.map(|c| decode_key(c, &key_names)).transpose()?;
        let limit = limit.max(1);
        let mut items = Vec::new();
        for _ in 0..MAX_ROUND_TRIPS {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_values(":pk", s(partition.clone()))
                .scan_index_forward(forward)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            query = match sk_prefix {
                Some(prefix) => query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", sk_attr)
                    .expression_attribute_values(":prefix", s(prefix)),
                None => query.key_condition_expression("#pk = :pk"),
            };
            if let Some(i) = index {
                query = query.index_name(INDEXES[i].0);
            } else {
                query = query.consistent_read(true);
            }
            let out = query.send().await.map_err(|e| {
                if e.code() == Some("ValidationException") && cursor.is_some() {
                    StoreError::InvalidCursor
                } else {
                    store_error(e)
                }
            })?;
            for item in out.items() {
                let value: T = read(item)?;
                if keep(&value) {
                    items.push(value);
                }
            }
            start = out.last_evaluated_key;
            if items.len() >= limit || start.is_none() {
                break;
            }
        }
        Ok(Page {
            items,
            next: start.as_ref().map(encode_key),
        })
    }

    /// Every item of a partition (for small sets: the grants of one ticket).
    async fn query_all<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        partition: String,
    ) -> Result<Vec<T>, StoreError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .query_page::<T, _>(
                    QuerySpec {
                        index: Some(index),
                        partition: partition.clone(),
                        forward: true,
                        sk_prefix: None,
                    },
                    500,
                    cursor.as_deref(),
                    |_| true,
                )
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }
}

/// Counts the attempts of one call: the SDK's standard retry sends a call again after a 5xx or a timeout, and
/// the attempt that failed may have been applied (the answer, not the write, was lost).
#[derive(Clone, Debug, Default)]
struct Attempts(Arc<AtomicU32>);

impl Attempts {
    fn retried(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 1
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "ticketbound.attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The attribute naming the call that last wrote a grant item (random per call; not part of the grant).
const WRITER: &str = "writer";

/// A fresh writer token for one call.
fn writer_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// `grant`'s item, marked as written by `writer`.
fn written_by(grant: &Grant, writer: &str) -> Result<Item, StoreError> {
    let mut item = grant_item(grant)?;
    item.insert(WRITER.into(), s(writer));
    Ok(item)
}

impl DynamoStore {
    /// A conditional write whose retry failed its condition may have failed it on its own first attempt, applied
    /// by DynamoDB but answered with a 5xx or not at all. If the SDK did retry and the grant item now stored
    /// carries this call's `writer` token, that write was ours and it succeeded. A condition that fails on the
    /// first attempt is always somebody else's write.
    async fn unless_landed(
        &self,
        result: Result<(), StoreError>,
        attempts: &Attempts,
        id: &str,
        writer: &str,
    ) -> Result<(), StoreError> {
        self.unless_landed_at(result, attempts, grant_key(id), id, writer)
            .await
    }

    /// [`Self::unless_landed`] for the item at `key`.
    async fn unless_landed_at(
        &self,
        result: Result<(), StoreError>,
        attempts: &Attempts,
        key: Item,
        id: &str,
        writer: &str,
    ) -> Result<(), StoreError> {
        match result {
            Err(StoreError::Conflict | StoreError::AlreadyExists) if attempts.retried() => {
                let stored = self.get_item(key).await?;
                let ours = stored
                    .as_ref()
                    .and_then(|item| item.get(WRITER))
                    .is_some_and(|w| w.as_s().ok().map(String::as_str) == Some(writer));
                if ours {
                    tracing::info!(item = %id, "a retried write had already been applied");
                    Ok(())
                } else {
                    result
                }
            }
            other => other,
        }
    }
}

fn key_schema(pk: &str, sk: &str) -> Result<Vec<KeySchemaElement>, StoreError> {
    let build = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(unbuildable)
    };
    Ok(vec![build(pk, KeyType::Hash)?, build(sk, KeyType::Range)?])
}

fn is_conditional_failure<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

#[async_trait]
impl GrantStore for DynamoStore {
    async fn insert_grant(&self, grant: &Grant, event: &AuditEvent) -> Result<(), StoreError> {
        let writer = writer_token();
        let grant_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(written_by(grant, &writer)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unbuildable)?;
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(event_item(event)?))
            .build()
            .map_err(unbuildable)?;
        let alias_put = ticket_id_alias(grant)?
            .map(|alias| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(alias))
                    .build()
                    .map_err(unbuildable)
            })
            .transpose()?;
        let attempts = Attempts::default();
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(grant_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build());
        if let Some(alias_put) = alias_put {
            transaction =
                transaction.transact_items(TransactWriteItem::builder().put(alias_put).build());
        }
        let result = transaction
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| transaction_error(e, StoreError::AlreadyExists));
        self.unless_landed(result, &attempts, &grant.id, &writer)
            .await
    }

    async fn update_grant(
        &self,
        grant: &Grant,
        expected: Expected,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        let condition = "#status = :status AND #version = :version";
        let names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#version".to_owned(), "version".to_owned()),
        ]);
        let values = HashMap::from([
            (":status".to_owned(), s(expected.status.as_str())),
            (
                ":version".to_owned(),
                AttributeValue::N(expected.version.to_string()),
            ),
        ]);
        let (attempts, writer) = (Attempts::default(), writer_token());
        let Some(event) = event else {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(written_by(grant, &writer)?))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.as_service_error().is_some_and(is_conditional_failure) {
                        StoreError::Conflict
                    } else {
                        store_error(e)
                    }
                });
            return self
                .unless_landed(result, &attempts, &grant.id, &writer)
                .await;
        };
        let grant_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(written_by(grant, &writer)?))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(unbuildable)?;
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(event_item(event)?))
            .build()
            .map_err(unbuildable)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(grant_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build())
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map(|_| ())
            // The grant's condition failed (the event key is new by construction): somebody else moved it.
            .map_err(|e| transaction_error(e, StoreError::Conflict));
        self.unless_landed(result, &attempts, &grant.id, &writer)
            .await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.get_item(grant_key(id))
            .await?
            .as_ref()
            .map(doc_of)
            .transpose()
    }

    async fn list_grants(
        &self,
        filter: &GrantFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Grant>, StoreError> {
        let (index, partition) = if let Some(t) = &filter.ticket {
            (BY_TICKET, ticket_pk(t))
        } else if let Some(r) = &filter.requester {
            (BY_REQUESTER, format!("REQ#{r}"))
        } else if let Some(st) = filter.status {
            (BY_STATUS, format!("STATUS#{}", st.as_str()))
        } else {
            (BY_TYPE, "GRANTS".to_owned())
        };
        self.query_page(
            QuerySpec {
                index: Some(index),
                partition,
                forward: false,
                sk_prefix: None,
            },
            limit,
            cursor,
            |g: &Grant| filter.matches(g),
        )
        .await
    }

    async fn active_grants_for(
        &self,
        requester: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let candidates: Vec<Grant> = self
            .query_all(BY_ACCESS, access_pk(requester, resource))
            .await?;
        let mut confirmed = Vec::new();
        for candidate in candidates {
            if let Some(g) = self.get_grant(&candidate.id).await?
                && g.status == GrantStatus::Active
            {
                confirmed.push(g);
            }
        }
        Ok(confirmed)
    }

    async fn grants_for_ticket(&self, ticket: &TicketRef) -> Result<Vec<Grant>, StoreError> {
        self.query_all(BY_TICKET, ticket_pk(ticket)).await
    }

    async fn grants_for_ticket_id(
        &self,
        connection: &str,
        ticket_id: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let mut grants = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .query_page::<String, _>(
                    QuerySpec {
                        index: None,
                        partition: ticket_id_pk(connection, ticket_id),
                        forward: true,
                        sk_prefix: Some("GRANT#"),
                    },
                    500,
                    cursor.as_deref(),
                    |_| true,
                )
                .await?;
            for id in page.items {
                if let Some(grant) = self.get_grant(&id).await? {
                    grants.push(grant);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(grants),
            }
        }
    }

    async fn list_events(
        &self,
        grant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.query_page(
            QuerySpec {
                index: None,
                partition: format!("GRANT#{grant_id}"),
                forward: true,
                sk_prefix: Some("EVENT#"),
            },
            limit,
            cursor,
            |_: &AuditEvent| true,
        )
        .await
    }

    async fn put_resource(&self, resource: &Resource) -> Result<(), StoreError> {
        // An update, not a put: the version goes on from what is stored (a resource stored before versions
        // existed reads as 1 and becomes 1; its ETag still changes with its content).
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(resource_key(&resource.id)))
            .update_expression(
                "SET gsi5pk = :type, gsi5sk = :id, doc = :doc, #version = if_not_exists(#version, :zero) + :one REMOVE #writer",
            )
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#writer", WRITER)
            .expression_attribute_values(":type", s("RESOURCES"))
            .expression_attribute_values(":id", s(resource.id.clone()))
            .expression_attribute_values(":doc", s(resource.to_storage_json().to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn put_resource_if(
        &self,
        resource: &Resource,
        expected: ResourceExpected,
    ) -> Result<u64, StoreError> {
        let (version, condition) = match expected {
            ResourceExpected::Absent => (1, RESOURCE_ABSENT),
            ResourceExpected::Version(v) => (v + 1, resource_at(v)),
        };
        let (attempts, writer) = (Attempts::default(), writer_token());
        let mut item = resource_key(&resource.id);
        item.extend([
            ("gsi5pk".into(), s("RESOURCES")),
            ("gsi5sk".into(), s(resource.id.clone())),
            ("doc".into(), s(resource.to_storage_json().to_string())),
            ("version".into(), AttributeValue::N(version.to_string())),
            (WRITER.into(), s(writer.clone())),
        ]);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if let ResourceExpected::Version(v) = expected {
            request = request
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", AttributeValue::N(v.to_string()));
        }
        let result = request
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.as_service_error().is_some_and(is_conditional_failure) {
                    StoreError::Conflict
                } else {
                    store_error(e)
                }
            });
        self.unless_landed_at(
            result,
            &attempts,
            resource_key(&resource.id),
            &resource.id,
            &writer,
        )
        .await?;
        Ok(version)
    }

    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        self.get_item(resource_key(id))
            .await?
            .as_ref()
            .map(doc_of)
            .transpose()
    }

    async fn get_resource_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedResource>, StoreError> {
        self.get_item(resource_key(id))
            .await?
            .as_ref()
            .map(versioned_resource_of)
            .transpose()
    }

    async fn delete_resource_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        self.delete_at_version(resource_key(id), resource_at(version), "version", version)
            .await
    }

    async fn list_resources_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedResource>, StoreError> {
        self.query_page_read(
            QuerySpec {
                index: Some(BY_TYPE),
                partition: "RESOURCES".into(),
                forward: true,
                sk_prefix: None,
            },
            limit,
            cursor,
            versioned_resource_of,
            |_: &VersionedResource| true,
        )
        .await
    }

    async fn delete_resource(&self, id: &str) -> Result<bool, StoreError> {
        // Read first: a delete the SDK retried after its first attempt was applied finds nothing to return, so
        // `ReturnValues` alone would call an existing resource missing.
        if self.get_resource(id).await?.is_none() {
            return Ok(false);
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("RESOURCE#{id}")))
            .key("sk", s("#RESOURCE"))
            .send()
            .await
            .map_err(store_error)?;
        Ok(true)
    }

    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // Which call wrote the record, so a retried write that had already been applied is told from a duplicate.
        let writer = writer_token();
        let attempts = Attempts::default();
        let key = HashMap::from([
            ("pk".to_owned(), s(format!("DELIVERY#{key}"))),
            ("sk".to_owned(), s("#DELIVERY")),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key.clone()))
            .item(
                TTL_ATTRIBUTE,
                AttributeValue::N(expires_at.unix_timestamp().to_string()),
            )
            .item(WRITER, s(writer.clone()))
            // New, or an expired record DynamoDB has not swept yet.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                if !attempts.retried() {
                    return Ok(false);
                }
                let stored = self.get_item(key).await?;
                Ok(stored
                    .as_ref()
                    .and_then(|item| item.get(WRITER))
                    .is_some_and(|w| w.as_s().ok() == Some(&writer)))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn open_bound_tickets(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (index, pk_attr, sk_attr) = INDEXES[OPEN_BOUND];
        let limit = limit.max(1);
        let mut keys: Vec<String> = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..MAX_ROUND_TRIPS {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_names("#sk", sk_attr)
                .expression_attribute_values(":pk", s(open_bound_pk(connection)))
                .projection_expression("#sk")
                .set_exclusive_start_key(start.take());
            query = match after {
                Some(key) => query
                    .key_condition_expression("#pk = :pk AND #sk > :after")
                    .expression_attribute_values(":after", s(after_key(key))),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let out = query.send().await.map_err(store_error)?;
            for item in out.items() {
                let sort = item
                    .get(sk_attr)
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| StoreError::Corrupt("gsi6 item without its sort key".into()))?;
                let key = sort.rsplit_once('#').map_or(sort.as_str(), |(k, _)| k);
                if keys.last().is_none_or(|last| last != key) {
                    if keys.len() == limit {
                        return Ok(keys);
                    }
                    keys.push(key.to_owned());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(keys)
    }

    async fn reconcile_state(&self) -> Result<Option<ReconcileState>, StoreError> {
        self.get_item(HashMap::from([
            ("pk".into(), s(RECONCILE_STATE_PK)),
            ("sk".into(), s(STATE_SK)),
        ]))
        .await?
        .as_ref()
        .map(doc_of)
        .transpose()
    }

    async fn save_reconcile_state(&self, state: &ReconcileState) -> Result<(), StoreError> {
        let doc = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(RECONCILE_STATE_PK))
            .item("sk", s(STATE_SK))
            .item("doc", s(doc))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn delivery_seen(&self, key: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let item = self
            .get_item(HashMap::from([
                ("pk".into(), s(format!("DELIVERY#{key}"))),
                ("sk".into(), s("#DELIVERY")),
            ]))
            .await?;
        let expires = item
            .as_ref()
            .and_then(|i| i.get(TTL_ATTRIBUTE))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        Ok(expires.is_some_and(|e| e >= now.unix_timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::aws_errors::tests::raw;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    fn cancelled(reasons: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let exception = TransactionCanceledException::builder()
            .set_cancellation_reasons(Some(
                reasons
                    .iter()
                    .map(|code| CancellationReason::builder().code(*code).build())
                    .collect(),
            ))
            .build();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(exception),
            raw(400),
        )
    }

    #[test]
    fn a_failed_condition_is_a_conflict_whatever_was_cancelled_beside_it() {
        for reasons in [
            &["ConditionalCheckFailed", "None"][..],
            &["ConditionalCheckFailed", "ThrottlingError"][..],
        ] {
            let error = transaction_error(cancelled(reasons), StoreError::Conflict);
            assert!(
                matches!(error, StoreError::Conflict),
                "{reasons:?}: {error:?}"
            );
        }
        let error = transaction_error(
            cancelled(&["ConditionalCheckFailed", "None"]),
            StoreError::AlreadyExists,
        );
        assert!(matches!(error, StoreError::AlreadyExists), "{error:?}");
    }

    #[test]
    fn a_transaction_cancelled_by_throttling_or_a_concurrent_transaction_is_retryable() {
        for reason in RETRYABLE_CANCELLATIONS {
            let error = transaction_error(cancelled(&["None", reason]), StoreError::Conflict);
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{reason}: {error:?}"
            );
        }
    }

    #[test]
    fn a_transaction_cancelled_by_validation_is_rejected_not_retried() {
        for reason in ["ValidationError", "ItemCollectionSizeLimitExceeded"] {
            let error = transaction_error(cancelled(&[reason, "None"]), StoreError::Conflict);
            assert!(
                matches!(error, StoreError::Rejected(_)),
                "{reason}: {error:?}"
            );
        }
    }

    #[test]
    fn a_throttled_transaction_that_was_not_cancelled_is_retryable() {
        let throttled = SdkError::service_error(
            TransactWriteItemsError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .build(),
            ),
            raw(400),
        );
        let error = transaction_error(throttled, StoreError::Conflict);
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }
}
