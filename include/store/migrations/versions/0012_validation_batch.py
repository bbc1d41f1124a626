"""A validation result names its batch: `validation_results.platform` held the batch name
(`tiktok_orders`, ...), not a platform; it becomes `batch`, as wide as `quarantine.batch`.

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table (the column is in the primary key)
    with op.batch_alter_table("validation_results") as table:
        table.alter_column(
            "platform",
            new_column_name="batch",
            existing_type=sa.String(32),
            type_=sa.String(48),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("validation_results") as table:
        table.alter_column(
            "batch",
            new_column_name="platform",
            existing_type=sa.String(48),
            type_=sa.String(32),
            existing_nullable=False,
        )
