"""What the Dagster UI shows about the tables: column schemas and column lineage.

The warehouse columns' descriptions are the SQLAlchemy models' `comment=`s, the same text
PostgreSQL keeps as COMMENT ON: written once, read here. The API's fields are described once
below, and the lineage says which API fields feed which warehouse column.
"""

import dagster as dg
from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql

from warehouse.models import FactSentCampaign, table_of

# The CINNOX sent-campaigns summary record, as the public doc lists it (docs/cinnox-api.md).
API_FIELDS: dict[str, tuple[str, str]] = {
    "id": ("string", "Campaign id."),
    "date": ("RFC3339 timestamp", "When the campaign was sent; any UTC offset."),
    "campaignName": ("string", "Campaign name."),
    "channel": ("string", "SMS or WhatsApp."),
    "createdBy": ("string", "Staff who created the campaign."),
    "sender.phone": ("string", "Virtual or service number or Sender ID (SMS); WhatsApp number."),
    "sender.channelName": ("string", "WhatsApp channel name."),
    "sender.sourceName": ("string", "Source of the WhatsApp template."),
    "sender.senderEID": ("string", "EID of the staff who sent the SMS campaign."),
    "subject": ("string", "WhatsApp template name."),
    "totalRecipients": ("integer", "Phone numbers the campaign was sent to."),
    "delivered": ("integer", "Messages delivered."),
    "read": ("integer", "Messages read (WhatsApp)."),
    "replied": ("integer", "Replies (WhatsApp)."),
    "pending": ("integer", "Messages waiting for a delivery receipt (WhatsApp)."),
    "failed": ("integer", "Messages that failed (WhatsApp)."),
}

# cinnox.fact_sent_campaign column <- the API fields its value is derived from (warehouse/load/).
# Columns the API does not feed (surrogate keys, the app from config, load bookkeeping) are absent.
FACT_COLUMN_SOURCES: dict[str, tuple[str, ...]] = {
    "campaign_id": ("id",),
    "sent_at": ("date",),
    "sent_date_key": ("date",),
    "channel_key": ("channel",),
    "sender_key": ("channel", "sender.phone", "sender.channelName", "sender.sourceName", "sender.senderEID"),
    "staff_key": ("createdBy",),
    "template_key": ("subject",),
    "campaign_name": ("campaignName",),
    "total_recipients": ("totalRecipients",),
    "delivered": ("delivered",),
    "read": ("read",),
    "replied": ("replied",),
    "pending": ("pending",),
    "failed": ("failed",),
}


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def _column_type(column: Column[object]) -> str:
    return str(column.type.compile(dialect=_POSTGRESQL)).lower()


def table_column(column: Column[object]) -> dg.TableColumn:
    """A warehouse column as Dagster shows it; the description is the column's COMMENT ON."""
    return dg.TableColumn(
        name=column.name,
        type=_column_type(column),
        # A column without a comment still shows, undescribed; tests/pipelines catch it.
        description=column.comment or None,
        constraints=dg.TableColumnConstraints(nullable=bool(column.nullable), unique=bool(column.unique)),
    )


def table_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[table_column(column) for column in table.columns])


def fact_table_schema() -> dg.TableSchema:
    return table_schema(table_of(FactSentCampaign))


def api_table_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description) for name, (kind, description) in API_FIELDS.items()]
    )


def fact_column_lineage(api_asset: dg.AssetKey) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=api_asset, column_name=field) for field in fields]
            for column, fields in FACT_COLUMN_SOURCES.items()
        }
    )


def fact_table_name() -> str:
    return table_of(FactSentCampaign).fullname
