"""One run of a shop at a time across its two DAGs (the pipeline and the event task): `shop_leases`.

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.create_table(
        "shop_leases",
        sa.Column("shop", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(250)),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("taken_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("wake_after", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("shop_leases")
