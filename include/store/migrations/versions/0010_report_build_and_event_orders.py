"""How long Amazon took to build a report, a cursor's last full sweep, and the orders Amazon's
notifications follow.

Revision 0010 (hand-made schema version 10 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def _add_missing(table: str, column: sa.Column) -> None:
    # a warehouse created by a later hand-made version has the column already
    if column.name not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)


def upgrade() -> None:
    _add_missing("amazon_shipment_reports", sa.Column("build_seconds", sa.Float(), nullable=True))
    _add_missing("extraction_cursors", sa.Column("full_swept_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_platform_events_order", "platform_events", ["shop", "platform", "order_ref"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_platform_events_order", table_name="platform_events")
    with op.batch_alter_table("extraction_cursors") as batch:
        batch.drop_column("full_swept_at")
    with op.batch_alter_table("amazon_shipment_reports") as batch:
        batch.drop_column("build_seconds")
