"""Retire the hand-made version table: alembic's version table records the schema from here on.

A warehouse upgraded by the hand-made steps (table `orderops_schema`, versions 1-10) is stamped at
the matching revision before upgrading (`include.store.warehouse.Warehouse.migrate`), then lands here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("orderops_schema"):
        op.drop_table("orderops_schema")


def downgrade() -> None:
    # the hand-made steps an older orderops runs find every table present and add nothing
    pass
