"""Agentless ML2 mechanism driver for the Cwmwl Cymru sandbox cloud."""
