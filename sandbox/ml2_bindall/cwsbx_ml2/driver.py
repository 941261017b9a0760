"""Bind every port to the first segment of its network, without any agent.

The sandbox runs Neutron as an API server only: nothing is plumbed, and no
shipped mechanism driver binds ports without an L2 agent reporting in. Nova's
fake virt driver only needs the port to be bound (ACTIVE, with a fixed IP).
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    """Sandbox-only: every port binds, nothing is wired."""

    vif_details = {
        portbindings.CAP_PORT_FILTER: False,
        portbindings.VIF_DETAILS_CONNECTIVITY: portbindings.CONNECTIVITY_L2,
    }

    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                self.vif_details,
                                status=constants.PORT_STATUS_ACTIVE)
            return
