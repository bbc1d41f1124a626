"""Amazon's last fulfilled-shipments report per shop.

Revision 0004 (hand-made schema version 4 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "amazon_shipment_reports",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("report_id", sa.Text(), nullable=False),
        sa.Column("data_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_rows", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("shop"),
    )


def downgrade() -> None:
    op.drop_table("amazon_shipment_reports")
