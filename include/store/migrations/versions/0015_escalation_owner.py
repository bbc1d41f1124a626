"""An escalation review names an owner, who takes the escalation (`escalation_reviews.owner`);
rows from before have none.

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    with op.batch_alter_table("escalation_reviews") as table:
        table.add_column(sa.Column("owner", sa.String(length=250), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escalation_reviews") as table:
        table.drop_column("owner")
