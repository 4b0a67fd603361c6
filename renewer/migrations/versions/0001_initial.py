"""Initial schema: jobs, their audit trail, the rate-limit ledger and per-certificate state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("certificate", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("force", sa.Boolean, nullable=False, default=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, default=0),
        sa.Column("deploy_attempt", sa.Integer, nullable=False, default=0),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("material_ref", sa.String(255), nullable=True),
        sa.Column("active_key", sa.String(64), nullable=True),
        sa.UniqueConstraint("active_key", name="uq_jobs_active_key"),
    )
    op.create_index("ix_jobs_claim", "jobs", ["not_before"])
    op.create_index("ix_jobs_certificate", "jobs", ["certificate", "id"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])
    op.create_table(
        "ratelimit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_ratelimit_lookup", "ratelimit_events", ["issuer", "at"])
    op.create_table(
        "certificate_state",
        sa.Column("certificate", sa.String(64), primary_key=True),
        sa.Column("not_after", sa.BigInteger, nullable=True),
        sa.Column("next_due", sa.BigInteger, nullable=True),
        sa.Column("last_attempt_at", sa.BigInteger, nullable=True),
        sa.Column("last_success_at", sa.BigInteger, nullable=True),
        sa.Column("last_result", sa.String(16), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_job_id", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key needs first).
    op.drop_table("certificate_state")
    op.drop_table("ratelimit_events")
    op.drop_table("job_events")
    op.drop_table("jobs")
