"""External OMS flag: `POST /v0/config/sales_order/external_oms` (a `Flag`).

NewStore answers in a wrapped shape (`{"value": {"enabled": ..}, "updated_at": ..}`); an older
spec version answered flat (`{"enabled": ..}`); both are read. Never set (missing or null)
reads as off. There is no DELETE: "off" is `enabled: false`. A 409
`concurrent_update_on_tenant_setting` (someone else wrote at the same time) is re-read and
retried.
"""

from __future__ import annotations

from reconciler.newstore.settings.flag import Flag


class ExternalOMS(Flag):
    key = "external_oms"
    path = "/v0/config/sales_order/external_oms"
    wire_field = "enabled"
    flat_answers = True
    retries_conflicts = True
    title = "External OMS flag"
    description = "Whether the tenant's orders are managed by an external OMS."
    enabled_description = "true: NewStore routes orders to the external OMS."
