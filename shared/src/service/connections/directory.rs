//! The connection directory: what every signed-in person may know of the connections, to pick one when binding
//! a request to a ticket. Its id, a name to show, its kind and its site; never settings, credentials, status or
//! errors, which stay with the admin routes.

use super::*;

/// One connection as the directory shows it to anyone signed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirectoryEntry {
    /// The slug a ticket reference names (`{"connection": "jira-main", ...}`).
    pub id: String,
    /// What a person reads in a picker: the kind of ticket system and its site.
    pub name: String,
    pub kind: ConnectionKind,
    /// The host of the ticket system (`acme.atlassian.net`), so people tell two sites of one kind apart.
    pub site: String,
}

impl DirectoryEntry {
    /// `label` is the kind's name as its plug-in describes it (`Jira Cloud`).
    fn of(settings: &ConnectionSettings, label: &str) -> Self {
        let site = url::Url::parse(&settings.base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let kind = label;
        Self {
            id: settings.id.clone(),
            name: if site.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind} ({site})")
            },
            kind: settings.kind,
            site,
        }
    }
}

impl Connections {
    /// `GET /v1/connection-directory`: every connection, for anyone signed in (see the module docs).
    pub async fn directory(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DirectoryEntry>, ServiceError> {
        let page = self.store.list_connections(limit, cursor).await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|c| {
                    let label = self.systems.kind(c.settings.kind).describe().label;
                    DirectoryEntry::of(&c.settings, label)
                })
                .collect(),
            next: page.next,
        })
    }
}
