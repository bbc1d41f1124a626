"""A link's match rule names the key, prefix or note pattern that found the Shopify order
(`custom_attribute:tiktok order id`, `name_prefix:TT-`): `order_links.match_rule` widens to 128.

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table to change a column's type
    with op.batch_alter_table("order_links") as table:
        table.alter_column("match_rule", existing_type=sa.String(32), type_=sa.String(128), existing_nullable=True)


def downgrade() -> None:
    # the rules kept before this revision were place names only: longer ones are cut to fit
    op.execute("UPDATE order_links SET match_rule = substr(match_rule, 1, 32) WHERE length(match_rule) > 32")
    with op.batch_alter_table("order_links") as table:
        table.alter_column("match_rule", existing_type=sa.String(128), type_=sa.String(32), existing_nullable=True)
