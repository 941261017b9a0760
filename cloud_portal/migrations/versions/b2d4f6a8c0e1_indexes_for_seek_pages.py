"""indexes for seek pages: every sort a long list offers, for everyone and per tenant; quota sums from the index

The server, request, people and audit lists page by their sort key (WHERE key < cursor ORDER BY
key LIMIT n) instead of OFFSET; each sort needs an index that ends in the id, so that the page
is read straight off the index however deep it is. Single-column indexes these replace go.
The quota usage sums (home pages, the request form, the quota overview, every reservation's
check) find the amounts in the (tenant, state) index instead of reading each reservation row.

Revision ID: b2d4f6a8c0e1
Revises: a1c3e5f7b9d2
Create Date: 2026-12-04 08:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b2d4f6a8c0e1'
down_revision = 'a1c3e5f7b9d2'
branch_labels = None
depends_on = None

NEW = [
    ("ix_servers_name", "servers", ["name", "id"]),
    ("ix_servers_created", "servers", ["created_at", "id"]),
    ("ix_servers_status", "servers", ["status", "id"]),
    ("ix_servers_vcpus", "servers", ["vcpus", "id"]),
    ("ix_servers_tenant_name", "servers", ["tenant_id", "name", "id"]),
    ("ix_servers_tenant_created", "servers", ["tenant_id", "created_at", "id"]),
    ("ix_servers_tenant_vcpus", "servers", ["tenant_id", "vcpus", "id"]),
    ("ix_server_requests_created", "server_requests", ["created_at", "id"]),
    ("ix_server_requests_state_created", "server_requests", ["state", "created_at", "id"]),
    ("ix_server_requests_tenant_created", "server_requests", ["tenant_id", "created_at", "id"]),
    ("ix_server_requests_requester_created", "server_requests", ["requester_id", "created_at", "id"]),
    ("ix_audit_events_at_id", "audit_events", ["at", "id"]),
    ("ix_audit_events_tenant_at", "audit_events", ["tenant_id", "at", "id"]),
    ("ix_users_tenant_email", "users", ["tenant_id", "email"]),
]
QUOTA_SUMS = ["tenant_id", "state", "user_id", "instances", "vcpus", "ram_mib", "disk_gb", "desktops"]
REPLACED = [
    ("ix_servers_created_at", "servers", ["created_at"]),
    ("ix_server_requests_created_at", "server_requests", ["created_at"]),
    ("ix_audit_events_at", "audit_events", ["at"]),
    ("ix_audit_events_tenant_id", "audit_events", ["tenant_id"]),
]


def upgrade():
    for name, table, columns in NEW:
        op.create_index(name, table, columns)
    for name, table, _columns in REPLACED:
        op.drop_index(name, table_name=table)
    # (tenant_id, status) gains the id, so a tenant's servers sorted by status read in order.
    op.drop_index("ix_servers_tenant_status", table_name="servers")
    op.create_index("ix_servers_tenant_status", "servers", ["tenant_id", "status", "id"])
    op.drop_index("ix_quota_reservations_tenant_state", table_name="quota_reservations")
    op.create_index("ix_quota_reservations_tenant_state", "quota_reservations", QUOTA_SUMS)
    # A tenant's approvals, newest first.
    op.drop_index("ix_server_requests_tenant_state", table_name="server_requests")
    op.create_index("ix_server_requests_tenant_state", "server_requests", ["tenant_id", "state", "created_at", "id"])


def downgrade():
    op.drop_index("ix_server_requests_tenant_state", table_name="server_requests")
    op.create_index("ix_server_requests_tenant_state", "server_requests", ["tenant_id", "state"])
    op.drop_index("ix_quota_reservations_tenant_state", table_name="quota_reservations")
    op.create_index("ix_quota_reservations_tenant_state", "quota_reservations", ["tenant_id", "state"])
    op.drop_index("ix_servers_tenant_status", table_name="servers")
    op.create_index("ix_servers_tenant_status", "servers", ["tenant_id", "status"])
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns)
    for name, table, _columns in reversed(NEW):
        op.drop_index(name, table_name=table)
