"""An event whose body the platform's own read contradicted is marked so: `platform_events.contradicted`
(null: no read compared it), counted in the run summary of the run that claimed it.

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.add_column("platform_events", sa.Column("contradicted", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("platform_events") as table:
        table.drop_column("contradicted")
