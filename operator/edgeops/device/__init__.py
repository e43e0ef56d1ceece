"""The reference device agent and the fleet simulator (``device`` extra)."""
