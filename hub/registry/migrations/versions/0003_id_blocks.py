"""Id blocks: processes reserve generation log ids in blocks, so a request's id is known before its row is written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    blocks = op.create_table(
        "id_blocks",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_id_blocks")),
    )
    # Ids already used by rows logged before this migration stay taken.
    newest = op.get_bind().execute(sa.text("SELECT max(id) FROM generations")).scalar()
    op.bulk_insert(blocks, [{"name": "generations", "next_id": (newest or 0) + 1}])


def downgrade() -> None:
    op.drop_table("id_blocks")
