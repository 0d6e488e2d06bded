"""External ATP flag: `POST /v0/config/routing/uses_external_atp` (a `Flag`).

NewStore answers `{"value": bool|null, "updated_at": ..}`; null means off (NewStore computes
ATP from its own stock). Written as `{"value": bool}`. No DELETE: "off" is `false`.
"""

from __future__ import annotations

from reconciler.newstore.settings.flag import Flag


class ExternalATP(Flag):
    key = "external_atp"
    path = "/v0/config/routing/uses_external_atp"
    title = "External ATP flag"
    description = (
        "Whether NewStore takes availability (ATP) from the external OMS webhook instead of its "
        "own stock."
    )
    enabled_description = (
        "true: NewStore asks the availability webhook. Needs the webhook config and the external "
        "OMS flag on."
    )
